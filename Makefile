# presenced: `make run` serves on 127.0.0.1:5060 with presenced.toml;
# `make test` runs every test. Both build the wasm modules they need.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
MODULES  := pa conference
WASM     := $(foreach m,$(MODULES),extensions/$(m)/$(m).wasm)

.PHONY: build run test bench vet clean wasm

build: bin/presenced wasm

wasm: $(WASM)

bin/presenced: FORCE
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/presenced

# A module is a wasip1 reactor: -buildmode=c-shared gives _initialize and
# the //go:wasmexport functions, and never runs main.
extensions/%.wasm: FORCE
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $@ ./$(dir $@)

run: build
	./bin/presenced -config presenced.toml

# The integration tests build the modules they load from source (sdktest).
test: wasm
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./extensions/... ./sdk
	$(GO) test -count=1 -timeout 10m ./...

bench: wasm
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./extensions/pa ./core/extension

clean:
	rm -rf bin $(WASM)

FORCE:
