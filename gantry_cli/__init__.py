"""The `gantry` command and the client side of Gantry.

What runs on a workstation or in a CI job, never in the operator pod: the CLI
(`gantry_cli.main`), `gantry predict` and its gRPC client configuration
(`gantry_cli.grpc_client`), the load tools behind `gantry bench load`
(`gantry_cli.loadgen`) and `gantry demo`. It may import the operator's package `gantry`
(API types, names, the autoscaler's scraper); the operator never imports it.
"""
