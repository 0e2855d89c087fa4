"""Kafka client security from ``Settings``: one place that turns the environment into client options.

Every client we run uses it, so a cluster that requires authentication and TLS needs no client to
be configured on its own: the Faust app (``faust_options``), ``KafkaPublisher``, ``ensure_topics``,
``crisis simulate`` / ``replay`` / ``demo`` and the test helpers (``kafka_client_options``, the
keyword arguments of aiokafka's producer, consumer and admin client).

- ``PLAINTEXT``: no authentication, no encryption (a laptop, the tests' loopback broker).
- ``SSL``: TLS; the broker's certificate is checked against ``KAFKA_SSL_CAFILE`` (or the system
  CAs) and its host name; ``KAFKA_SSL_CERTFILE`` / ``KAFKA_SSL_KEYFILE`` add a client certificate.
- ``SASL_PLAINTEXT`` / ``SASL_SSL``: a user name and password (``SCRAM-SHA-512`` by default,
  ``SCRAM-SHA-256`` or ``PLAIN``), over TLS with ``SASL_SSL`` (what production should use: SCRAM
  never sends the password, TLS hides the records).

Mistakes are refused when the settings are read (``check``), not at the first connection: a worker
that silently fell back to PLAINTEXT would send caller phone numbers in clear text.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from streams.config import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class KafkaSecurityError(ValueError):
    """The Kafka security settings contradict each other; the message names the variables."""


def uses_sasl(settings: Settings) -> bool:
    """Whether clients authenticate with a user name and password."""
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    """Whether clients talk TLS to the brokers."""
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def check(settings: Settings) -> None:
    """Refuse contradictory settings with the variable to fix; returns quietly when they are usable."""
    protocol = settings.kafka_security_protocol
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if uses_sasl(settings):
        if settings.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise KafkaSecurityError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                                     f"got {settings.kafka_sasl_mechanism!r}")
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                                     "KAFKA_SASL_PASSWORD")
        if protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism == "PLAIN":
            raise KafkaSecurityError("SASL PLAIN over SASL_PLAINTEXT sends the password in clear text: use "
                                     "KAFKA_SASL_MECHANISM=SCRAM-SHA-512, or SASL_SSL")
    tls_files = (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    if any(tls_files) and not uses_tls(settings):
        raise KafkaSecurityError(f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                                 "TLS: set it to SSL or SASL_SSL (or unset the files)")
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise KafkaSecurityError("a client certificate needs both KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context clients use (host names always checked), or ``None`` without TLS."""
    if not uses_tls(settings):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile or None,
        certfile=settings.kafka_ssl_certfile or None,
        keyfile=settings.kafka_ssl_keyfile or None,
    )
    return context


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``."""
    check(settings)
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if uses_sasl(settings):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: its consumer and producer authenticate like our own clients."""
    check(settings)
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(settings)
    if uses_sasl(settings):
        return {"broker_credentials": SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=context)}
    if context is not None:
        return {"broker_credentials": SSLCredentials(context)}
    return {}
