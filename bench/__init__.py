"""Ferry's benchmarks: `python -m bench` (`make bench`) starts its own fleet and prints numbers.

Numbers, never assertions: the bench measures this machine as it is and says so. The fleet is
started exactly as the integration tests start theirs (`devstack.fleet.start_fleet`), on free
ports, so it runs beside `make run` and beside a test session.
"""
