"""The load generator behind `gantry bench load`: profiles, gRPC runner, results, plot."""
