"""EC2 and instance-metadata emulator for the VPC CNI testbed (moto based)."""
