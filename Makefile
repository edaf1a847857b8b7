# presenced: `make run` serves on 127.0.0.1:5060 with presenced.toml;
# `make buddylist` does too, plus SIP over WebSocket and the browser buddy
# list (web/buddylist); `make test` runs every test. Each builds the wasm
# modules it needs.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
MODULES  := pa conference dialog mwi
WASM     := $(foreach m,$(MODULES),extensions/$(m)/$(m).wasm)

.PHONY: build run buddylist test bench bench-compare vet clean wasm examples web

build: bin/presenced wasm

wasm: $(WASM)

# The C example module; it needs clang and wasi-libc (examples/c/README.md),
# so only make test builds it, not make build or make run.
examples:
	$(MAKE) -s -C examples/c note.wasm

bin/presenced: FORCE
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/presenced

# A module is a wasip1 reactor: -buildmode=c-shared gives _initialize and
# the //go:wasmexport functions, and never runs main.
extensions/%.wasm: FORCE
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $@ ./$(dir $@)

run: build
	./bin/presenced -config presenced.toml

# The buddy list page's JavaScript, SIP.js, from npm as package-lock.json
# pins it; the page loads its ES modules as they are, nothing is bundled.
web: web/buddylist/node_modules/.package-lock.json

web/buddylist/node_modules/.package-lock.json: web/buddylist/package-lock.json
	cd web/buddylist && npm ci --no-audit --no-fund

buddylist: build web
	./bin/presenced -config web/buddylist/presenced.toml

# The integration tests build the modules they load from source (sdktest).
# The browser test needs the page's JavaScript: without npm it is not
# installed, and that test skips (fails in CI).
test: wasm examples $(if $(shell command -v npm),web)
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./extensions/... ./sdk
	$(GO) test -count=1 -timeout 10m ./...

# bench/run.sh starts presenced on a free port, drives it with sipp
# (bench/cmd/presbench) and stops it; then the Go benchmarks, briefly.
# bench-compare does the same against Kamailio too (bench/kamailio).
bench: build
	bench/run.sh
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -benchtime 200ms ./extensions/... ./internal/...

bench-compare: build
	bench/run.sh compare

clean:
	rm -rf bin $(WASM) web/buddylist/node_modules
	$(MAKE) -s -C examples/c clean

FORCE:

# Each fuzz target for FUZZTIME; the corpora are in each package's
# testdata/fuzz, and a failure found is written there.
FUZZTIME ?= 10s
FUZZ := internal/header:FuzzParseEvent internal/header:FuzzParseExpires internal/header:FuzzRequest \
	abi:FuzzRequest abi:FuzzResponse abi:FuzzManifest abi:FuzzInitRequest abi:FuzzFields abi:FuzzPresentity abi:FuzzMediaType \
	internal/config:FuzzParse internal/server:FuzzPresentityOf sdk/xmldoc:FuzzParse sdk/xmldoc:FuzzRead sdk/pubstate:FuzzDecode

.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZ); do \
		echo "fuzz ./$${t%%:*} $${t#*:}"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}; \
	done
