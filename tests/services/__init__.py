"""Real services the tests start on loopback (PostgreSQL, an S3 server), shared by test folders."""
