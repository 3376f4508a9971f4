# tl — build, test, benchmark and demo. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

PREFIX   ?= /usr/local
SWIFT    ?= swift
# PORTABLE=1 builds for baseline x86-64 (no AVX2/FMA; slower numerics, runs on any x86-64 CPU).
PORTABLE ?=
export TL_PORTABLE := $(PORTABLE)

TOOLS    := tl-tensor tl-train tl-extract tl-eval
RELEASE  := .build/release
DEBUG    := .build/debug
DATA     := examples/data/fashion-mnist
FMNIST_URL := http://fashion-mnist.s3-website.eu-central-1.amazonaws.com
FMNIST_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz

.PHONY: all help build test test-unit test-cli demo bench data install uninstall clean man-lint

all: build

help:
	@echo "make build    release build of $(TOOLS) (PORTABLE=1 for CPUs without AVX2/FMA)"
	@echo "make test     all tests: unit (swift test), command-line, man pages"
	@echo "make demo     build and run the demo on the bundled Fashion-MNIST sample"
	@echo "make bench    speed and memory figures (see Tests/bench/README.md)"
	@echo "make data     the full Fashion-MNIST into $(DATA)"
	@echo "make install  binaries and man pages under PREFIX=$(PREFIX)"
	@echo "make clean    remove build products and demo output"

build:
	$(SWIFT) build -c release

# One debug build serves the unit tests and the command-line tests.
test:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build 2>&1 | tee .build/unit-tests.log | grep -vE "^Test Case .*(started|passed)"
	TL_BIN=$(DEBUG) bash Tests/cli/run.sh

demo: build
	TL_BIN=$(RELEASE) bash examples/demo.sh

bench: build
	TL_BIN=$(RELEASE) bash Tests/bench/bench.sh

# Real Fashion-MNIST (MIT): from Debian's dataset-fashion-mnist when installed, else downloaded.
data: $(addprefix $(DATA)/,$(FMNIST_FILES))
$(DATA)/%.gz:
	@mkdir -p $(DATA)
	if [ -f /usr/share/datasets/fashion-mnist/$*.gz ]; then cp /usr/share/datasets/fashion-mnist/$*.gz $@; \
	else curl -fsSL -o $@.part $(FMNIST_URL)/$*.gz && mv $@.part $@; fi

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(addprefix $(RELEASE)/,$(TOOLS)) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(TOOLS))
	cd $(DESTDIR)$(PREFIX)/share/man && rm -f $(addprefix man1/,$(notdir $(wildcard man/*.1))) $(addprefix man5/,$(notdir $(wildcard man/*.5))) $(addprefix man7/,$(notdir $(wildcard man/*.7)))

# Also part of `make test` (Tests/cli/test_man.sh).
man-lint:
	for m in man/*.[157]; do out=$$(groff -man -ww -z $$m 2>&1); [ -z "$$out" ] || { echo "$$m: $$out"; exit 1; }; done

clean:
	rm -rf .build examples/out examples/transfer/out examples/imagenet-codes/out Tests/bench/out
