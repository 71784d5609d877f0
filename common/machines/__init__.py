"""The sans-IO protocol machines: Map-Server, Map-Resolver, ETR, ITR, the
registration table and map-cache they consult, Clone replicas, and the watchdog's
liveness decision.  Time comes in as ``now``; effects go out as return values."""
