# Convenience targets. The real entry points are the scripts under hack/.

.PHONY: lab lab-teardown

# The main job: the real Linux aoe initiator and md RAID1 against two aoetarget
# replicas, in VMs on a bridge (needs root; hack/lab re-executes itself with
# sudo). Options go in LAB_FLAGS, e.g. make lab LAB_FLAGS='--mtu 9000 --replicas vm'.
lab:
	hack/lab $(LAB_FLAGS)

# Remove whatever an interrupted lab run left behind.
lab-teardown:
	hack/lab teardown
