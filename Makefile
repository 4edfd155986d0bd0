# ota-agent: see README.md. Every target runs from a fresh clone with only Go installed
# (QEMU targets say so and skip when qemu-user-static is missing).
GO       ?= go
# The version ota-agent version prints and the packages carry (dist/debian/version.sh).
VERSION  ?= $(shell ./dist/debian/version.sh)
BUILDTIME ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X github.com/ota-agent/ota-agent/agent.Version=$(VERSION) -X github.com/ota-agent/ota-agent/agent.BuildTime=$(BUILDTIME)
CMDS     := ota-agent ota-testserver ota-release
# The agent speaks HTTP/1.1 only (protocol.md 1.4), so net/http's HTTP/2 is not linked into it
# (-320 KB on armv7). internal/testenv.AgentTags says the same to the tests and the bench.
AGENT_TAGS := nethttpomithttp2
# Our own packages are not inlined into the agent (-131 KB on armv7; its hot loops are the
# standard library's copy and hash code, which keeps inlining): testenv.AgentGCFlags.
AGENT_GCFLAGS := github.com/ota-agent/ota-agent/...=-l
CROSS    := linux/arm/7 linux/arm64/- linux/amd64/-
DESTDIR  ?=
PREFIX   ?= /usr
# make install INSTALL_BIN=bin/linux-armv7/ota-agent (after make cross) for a target rootfs
INSTALL_BIN ?= bin/ota-agent
export CGO_ENABLED := 0

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build cross deb test test-native test-qemu test-system demo bench bench-peers install sizes fuzz lint clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/ota-testserver ./cmd/ota-release
	$(GO) build -trimpath -tags '$(AGENT_TAGS)' -gcflags '$(AGENT_GCFLAGS)' -ldflags '$(LDFLAGS)' -o bin/ ./cmd/ota-agent

cross:
	@set -e; for t in $(CROSS); do \
	  os=$${t%%/*}; rest=$${t#*/}; arch=$${rest%%/*}; arm=$${rest#*/}; \
	  suffix=$$arch; [ "$$arm" != "-" ] && suffix=$${arch}v$$arm; \
	  mkdir -p bin/$$os-$$suffix; \
	  echo "build $$os/$$suffix"; \
	  export GOOS=$$os GOARCH=$$arch GOARM=$$( [ "$$arm" = "-" ] || echo $$arm ); \
	  $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$$os-$$suffix/ ./cmd/ota-testserver ./cmd/ota-release; \
	  $(GO) build -trimpath -tags '$(AGENT_TAGS)' -gcflags '$(AGENT_GCFLAGS)' -ldflags '$(LDFLAGS)' -o bin/$$os-$$suffix/ ./cmd/ota-agent; \
	done

# Debian packages (reproducible: the same source gives the same bytes) into $(DEB_OUT):
# ota-agent and ota-agent-tools for each of $(DEB_ARCHS) (Debian's names).
DEB_OUT   ?= bin/deb
DEB_ARCHS := armhf arm64 amd64
deb: build cross
	@for a in $(DEB_ARCHS); do \
	  case $$a in armhf) d=linux-armv7;; *) d=linux-$$a;; esac; \
	  $(GO) run ./internal/deb/mkdeb --arch $$a --version '$(VERSION)' --time '$(BUILDTIME)' \
	    --bin bin/$$d --host-bin bin --out '$(DEB_OUT)' || exit 1; \
	done

sizes: cross
	@for f in bin/linux-*/ota-agent; do printf '%-28s %9d bytes\n' $$f $$(stat -c %s $$f); done

test: lint test-native test-qemu

# gofmt and go vet always; staticcheck when the module proxy can serve it (said so if not).
lint:
	@f=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$f" ]; then echo "gofmt would change: $$f"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags otatest ./agent/...
	$(GO) vet -tags system ./systemtest/...
	GOARCH=arm GOARM=7 $(GO) vet ./systemtest/guest # the armv7 board builds it
	@if $(GO) run $(STATICCHECK) -version >/dev/null 2>&1; then \
	  echo "staticcheck ./..."; $(GO) run $(STATICCHECK) ./... && $(GO) run $(STATICCHECK) -tags system ./systemtest/...; \
	else echo "SKIPPED: staticcheck (could not fetch $(STATICCHECK))"; fi

# -race needs cgo and a C compiler; without one the suite still runs, and says so. Output goes
# through internal/testsum: go test's usual lines, then every skipped test with its reason.
GOTEST = bash -o pipefail -c '$(GO) test -json "$$@" | bin/testsum' --

bin/testsum: internal/testsum/main.go
	@mkdir -p bin && $(GO) build -o bin/testsum ./internal/testsum

# cmd/ota-agent runs the built agent as its own process, never race-built (its memory is
# measured): there -race would instrument only the in-process test server, which its own
# package tests with -race, at 15 times the time. So that package runs without it.
test-native: bin/testsum
	@if command -v gcc >/dev/null || command -v cc >/dev/null; then \
	  set -e; \
	  echo "CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./... (all but ./cmd/ota-agent)"; \
	  CGO_ENABLED=1 $(GOTEST) -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/cmd/ota-agent$$'); \
	  echo "$(GO) test -count=1 -timeout 20m ./cmd/ota-agent (end to end with the built agent: no -race, see above)"; \
	  $(GOTEST) -count=1 -timeout 20m ./cmd/ota-agent; \
	else \
	  echo "NOTE: no C compiler, so no -race (apt-get install gcc)"; \
	  $(GOTEST) -count=1 -timeout 20m ./...; \
	fi

# The packages that run on the device, tested under QEMU user mode too.
DEVICE_PKGS := ./packaging/... ./store/... ./installer/... ./agent/... ./internal/config/... ./internal/hooks/... ./internal/health/... ./internal/trust/... ./internal/protocol/... ./internal/delivery/... ./internal/assemble/... ./internal/update/... ./internal/osimage/... ./internal/daemon/... ./internal/metrics/...

test-qemu: bin/testsum
	@if command -v qemu-arm-static >/dev/null && command -v qemu-aarch64-static >/dev/null; then \
	  set -e; \
	  echo "== go test -short under qemu-arm-static (linux/arm GOARM=7)"; \
	  GOOS=linux GOARCH=arm GOARM=7 $(GOTEST) -short -count=1 -timeout 20m -exec qemu-arm-static $(DEVICE_PKGS); \
	  echo "== go test -short under qemu-aarch64-static (linux/arm64)"; \
	  GOOS=linux GOARCH=arm64 $(GOTEST) -short -count=1 -timeout 20m -exec qemu-aarch64-static $(DEVICE_PKGS); \
	else \
	  echo "SKIPPED: QEMU tests (qemu-arm-static / qemu-aarch64-static not installed; apt-get install qemu-user-static)"; \
	fi

# Boots A/B arm64 images under qemu-system with U-Boot and systemd (root; installs its Debian
# packages; builds the rootfs once per dist/image/mkrootfs.sh into .system-build/).
# POWER_CUTS=N power cuts of each kind (default 3), ENV_CUTS=N during environment writes
# (default 10); serial logs stay in .system-build/run-*/.
test-system: deb
	@./systemtest/run.sh

demo:
	@./dist/demo.sh

bench:
	@./bench/run.sh

# ota-agent beside Mender, SWUpdate and RAUC (installs their Debian packages; root): bench/peers.md.
# Its OS-image row boots the arm64 board of make test-system from a rootfs with the peers added
# (built once into $$OTA_SYSTEM_BUILD, default .system-build): about half an hour in all.
bench-peers:
	@./bench/peers.sh

fuzz:
	@for f in FuzzDecodeDetails FuzzPayloadReader FuzzParseReleaseFile; do \
	  $(GO) test ./packaging -run '^$$' -fuzz "^$$f$$" -fuzztime 20s || exit 1; done
	$(GO) test ./testserver/reference -run '^$$' -fuzz '^FuzzParseQuery$$' -fuzztime 20s
	$(GO) test ./internal/dbus -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime 20s

install: $(if $(filter bin/ota-agent,$(INSTALL_BIN)),build)
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(PREFIX)/bin/ota-agent
	install -D -m 0644 dist/ota-agent.service $(DESTDIR)/lib/systemd/system/ota-agent.service
	install -D -m 0640 dist/config.yaml $(DESTDIR)/etc/ota-agent/config.yaml
	install -d -m 0755 $(DESTDIR)/etc/systemd/system/multi-user.target.wants
	ln -sf /lib/systemd/system/ota-agent.service $(DESTDIR)/etc/systemd/system/multi-user.target.wants/ota-agent.service
	install -d -m 0755 $(DESTDIR)/var/lib/ota-agent # the unit's StateDirectoryMode, as the package makes it

clean:
	rm -rf bin
