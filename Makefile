# multihome: CNI plugins for the secondary networks of multihomed pods and VMs.
# `make demo` and `make test` work on a fresh Debian 12 machine as root: both install what they need.

SHELL        := /bin/bash
CARGO        ?= cargo
CNI_BIN_DIR  ?= /opt/cni/bin
DESTDIR      ?=
SBIN_DIR     ?= /usr/local/sbin
# The operators' tools (the CNI executables, and ovn-overlay's other names, are installed by
# deploy/install-cni.sh, as on a cluster).
TOOLS        := multihome-ipam
# Debian packages the build, the tests, the demo and the benchmarks need.
DEB_PKGS     := iproute2 python3 python3-yaml nftables openssl iputils-ping time golang-go golang-github-appc-cni-dev containernetworking-plugins \
                qemu-system-x86 python3-venv kmod busybox-static etcd-server etcd-client \
                openvswitch-switch ovn-central ovn-host gnuplot-nox \
                dnsmasq-base kea-dhcp4-server kea-dhcp6-server isc-dhcp-server podman containerd

# .cargo/config.toml builds static executables for an explicit target, hence the triple.
RELEASE_DIR  := $(CURDIR)/target/x86_64-unknown-linux-gnu/release
export MULTIHOME_BIN_DIR := $(RELEASE_DIR)

.PHONY: deps build install test test-kernel demo bench clean fmt lint root

## deps: apt-get update, then apt-get install of what is missing (idempotent). No service may start
## while installing (Open vSwitch and OVN would come up in the root namespace and build br-int
## there): a policy-rc.d that refuses is put in place for the install when none exists. The DHCP
## servers the dhcp tests run in namespaces (kea, isc-dhcp-server) are disabled at boot as well:
## one answering on the machine's own uplink would hand out addresses there.
deps: root
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing" $$missing; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; [ $$rc -eq 0 ] || exit $$rc; \
	  if command -v systemctl >/dev/null; then systemctl disable kea-dhcp4-server kea-dhcp6-server isc-dhcp-server containerd >/dev/null 2>&1 || true; fi; \
	else echo "make deps: all of $(DEB_PKGS) present"; fi

## build: release executables (static) in target/x86_64-unknown-linux-gnu/release
build:
	$(CARGO) build --release --workspace --bins

## install: the CNI executables into $(DESTDIR)$(CNI_BIN_DIR), the tools into $(DESTDIR)$(SBIN_DIR)
install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR) $(DESTDIR)$(SBIN_DIR)
	sh deploy/install-cni.sh $(RELEASE_DIR) $(DESTDIR)$(CNI_BIN_DIR)
	for b in $(TOOLS); do install -m 0755 $(RELEASE_DIR)/$$b $(DESTDIR)$(SBIN_DIR)/$$b; done

## test: unit tests and the conformance suite (real namespaces, real libcni, reference peers),
## then the kernel lane (about 45 s; the first run also fetches the kernel and virtme-ng)
test: deps build
	$(CARGO) test --release --workspace --no-fail-fast
	tools/kernel-lane

## test-kernel: what this kernel cannot run (bridge VLAN filtering), on Debian's kernel under qemu
test-kernel: deps build
	tools/kernel-lane

## demo: two simulated nodes, the NMState and Multus steps, VMs on the bridge network via libcni
demo: deps build
	$(CARGO) run --release -q -p conformance-tests --bin multihome-demo

## bench: whole-process benchmarks against the reference plugins; writes docs/benchmarks.md
bench: deps build
	$(CARGO) run --release -q -p conformance-tests --bin multihome-bench -- --write docs/benchmarks.md

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean

root:
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root: the tests create network namespaces and install Debian packages" >&2; exit 1; fi
