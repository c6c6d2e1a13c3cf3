# Convenience targets. The real entry points are the scripts under hack/.
#
#   make build                  ./aoetarget (static, version from git describe)
#   sudo make install           binary, systemd units, sysusers file, man pages,
#                               example config (only if absent); then creates
#                               the aoetarget user and reloads systemd
#   make install DESTDIR=/tmp/root PREFIX=/usr UNITDIR=/lib/systemd/system
#                               the same into a staging tree (for a package)
#   sudo make uninstall         remove what install put there, but not
#                               /etc/aoetarget, /var/lib/aoetarget or the user
#   make verify-units           systemd-analyze verify the units as installed
#   make lint-man               the man pages, with warnings as errors
#
# Nothing here enables or starts a unit: see aoetarget(8), SYSTEMD.

.PHONY: lab lab-teardown failover build install uninstall verify-units lint-man

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# The version aoetarget --version prints (and its ATA firmware revision is
# derived from). Without git (a source tarball) the one in the source stays.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
# Units and the sysusers file go to the local administrator's directories by
# default, like the binary to /usr/local; a package sets
# UNITDIR=/lib/systemd/system SYSUSERSDIR=/usr/lib/sysusers.d PREFIX=/usr.
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d

UNITS := aoetarget.service aoetarget@.service aoetarget-vblade@.service aoetarget-vblade.service
MAN8 := dist/man/aoetarget.8
MAN5 := dist/man/aoetarget.toml.5

# The main job: the real Linux aoe initiator and md RAID1 against two aoetarget
# replicas, in VMs on a bridge (needs root; hack/lab re-executes itself with
# sudo). Options go in LAB_FLAGS, e.g. make lab LAB_FLAGS='--mtu 9000 --replicas vm'.
lab:
	hack/lab $(LAB_FLAGS)

# Remove whatever an interrupted lab run left behind.
lab-teardown:
	hack/lab teardown

# The NFS failover lab: Debian VMs, md RAID1 over aoetarget replicas, a power
# cut of the NFS server, and the rsync counter-experiment (needs root).
failover:
	hack/failover $(FAILOVER_FLAGS)

# build always runs go build (its cache makes that cheap); install only needs
# ./aoetarget to be newer than the sources, so that "make build" as a user and
# then "sudo make install" does not need Go in root's PATH.
GOBUILD = CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(if $(VERSION),-X main.version=$(VERSION))" -o aoetarget ./cmd/aoetarget

build:
	$(GOBUILD)

aoetarget: $(shell find . -name '*.go' -not -path './.git/*' 2>/dev/null) go.mod go.sum
	$(GOBUILD)

# The units name the binary by its installed path: rewrite it for a PREFIX
# other than /usr/local.
install: aoetarget
	install -D -m 0755 aoetarget $(DESTDIR)$(SBINDIR)/aoetarget
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	@for u in $(UNITS); do \
		echo "dist/systemd/$$u -> $(DESTDIR)$(UNITDIR)/$$u"; \
		sed 's#/usr/local/sbin/aoetarget#$(SBINDIR)/aoetarget#g' dist/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -D -m 0644 dist/sysusers.d/aoetarget.conf $(DESTDIR)$(SYSUSERSDIR)/aoetarget.conf
	install -D -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/aoetarget.8
	install -D -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/aoetarget.toml.5
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/aoetarget
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/aoetarget/aoetarget.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/aoetarget/aoetarget.toml (the example is dist/aoetarget.toml)"; \
	else \
		echo "install -m 0644 dist/aoetarget.toml $(DESTDIR)$(SYSCONFDIR)/aoetarget/aoetarget.toml"; \
		install -m 0644 dist/aoetarget.toml $(DESTDIR)$(SYSCONFDIR)/aoetarget/aoetarget.toml; \
	fi
	@if [ -z "$(DESTDIR)" ]; then \
		if command -v systemd-sysusers >/dev/null; then \
			echo "systemd-sysusers $(SYSUSERSDIR)/aoetarget.conf"; \
			systemd-sysusers $(SYSUSERSDIR)/aoetarget.conf; \
		fi; \
		if [ -d /run/systemd/system ]; then \
			echo "systemctl daemon-reload"; systemctl daemon-reload; \
		fi; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/aoetarget
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/aoetarget.conf
	rm -f $(DESTDIR)$(MANDIR)/man8/aoetarget.8 $(DESTDIR)$(MANDIR)/man5/aoetarget.toml.5
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		echo "systemctl daemon-reload"; systemctl daemon-reload; \
	fi
	@echo "kept $(SYSCONFDIR)/aoetarget, /var/lib/aoetarget and the aoetarget user;" \
		"units still running were not stopped"

# Install into a temporary root, then:
# - aoetarget --check-config: the example configuration is valid;
# - systemd-sysusers --root: the sysusers file is valid and creates the user;
# - systemctl --root enable: the [Install] sections (WantedBy=, Also=) work;
# - systemd-analyze verify: the units, templates as instances, with ExecStart=
#   pointing at the binary in the temporary root (verify wants it to exist and
#   be executable). It exits 0 on most problems ("Unknown key ..., ignoring"),
#   so any line it prints fails the target. It works without systemd as PID 1
#   (a container, CI): no generators, no man page look-ups, log to stderr.
verify-units: aoetarget
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; root=$$tmp/root; \
	$(MAKE) --no-print-directory -s install DESTDIR=$$root PREFIX=/usr/local SBINDIR=/usr/local/sbin \
		UNITDIR=/etc/systemd/system SYSUSERSDIR=/etc/sysusers.d SYSCONFDIR=/etc >/dev/null; \
	$$root/usr/local/sbin/aoetarget --check-config $$root/etc/aoetarget/aoetarget.toml >$$tmp/check.log 2>&1 \
		|| { cat $$tmp/check.log; echo "verify-units: the example configuration is invalid"; exit 1; }; \
	systemd-sysusers --root=$$root $$root/etc/sysusers.d/aoetarget.conf >$$tmp/sysusers.log 2>&1 \
		|| { cat $$tmp/sysusers.log; echo "verify-units: systemd-sysusers failed"; exit 1; }; \
	grep -q '^aoetarget:x:[0-9]*:[0-9]*:AoE target:/var/lib/aoetarget:' $$root/etc/passwd \
		|| { echo "verify-units: sysusers created no aoetarget user"; exit 1; }; \
	grep -q '^disk:.*[:,]aoetarget\(,\|$$\)' $$root/etc/group \
		|| { echo "verify-units: aoetarget is not in group disk"; exit 1; }; \
	systemctl --root=$$root enable aoetarget.service aoetarget@e1.0.service aoetarget-vblade@test.service \
		>$$tmp/enable.log 2>&1 || { cat $$tmp/enable.log; echo "verify-units: systemctl enable failed"; exit 1; }; \
	for l in multi-user.target.wants/aoetarget.service multi-user.target.wants/aoetarget@e1.0.service \
		multi-user.target.wants/aoetarget-vblade.service aoetarget-vblade.service.wants/aoetarget-vblade@test.service; do \
		[ -L $$root/etc/systemd/system/$$l ] || { cat $$tmp/enable.log; echo "verify-units: enable made no $$l"; exit 1; }; \
	done; \
	mkdir $$tmp/units; \
	for u in $(UNITS); do \
		sed "s#/usr/local/sbin/aoetarget#$$root/usr/local/sbin/aoetarget#g" $$root/etc/systemd/system/$$u > $$tmp/units/$$u; \
	done; \
	cd $$tmp/units; \
	status=0; \
	SYSTEMD_LOG_LEVEL=notice SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_COLOR=0 \
		systemd-analyze verify --man=no --generators=no \
		./aoetarget.service ./aoetarget@e1.0.service ./aoetarget-vblade@test.service ./aoetarget-vblade.service \
		>$$tmp/verify.log 2>&1 || status=$$?; \
	if [ $$status -ne 0 ] || [ -s $$tmp/verify.log ]; then \
		cat $$tmp/verify.log; echo "verify-units: systemd-analyze verify: exit status $$status, output above"; exit 1; \
	fi; \
	echo "verify-units: $(UNITS), sysusers.d/aoetarget.conf and aoetarget.toml OK"

# man(1) and groff warnings are errors. MANWIDTH=80 formats as on a terminal
# (warnings about lines that do not fit depend on the width).
lint-man:
	@set -e; for f in $(MAN8) $(MAN5); do \
		out=$$( { LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l $$f >/dev/null; \
			groff -man -ww -z $$f; } 2>&1 ); \
		if [ -n "$$out" ]; then echo "$$out"; echo "lint-man: $$f has warnings"; exit 1; fi; \
	done; echo "lint-man: $(MAN8) $(MAN5) OK"
