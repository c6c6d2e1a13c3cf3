module aoetarget-failover-client

go 1.21
