"""Durable timers: deadlines that fire by event time or the wall clock, one pure module per kind."""
