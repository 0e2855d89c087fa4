"""`crisis ingest`: HTTP and NENA EIDO front door for dispatch centers that cannot produce to Kafka."""
