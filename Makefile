# The front door: `make demo` and `make test`. Each installs what it needs (pinned) itself.
SHELL := /usr/bin/env bash
CARGO ?= cargo
NEXTEST_VERSION := 0.9.143
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := classify classify_wrapped policy

.PHONY: test demo fuzz lint unit tools package package-check iam-report bench startup-order

## make test: formatting, lints, every test in the workspace, then the packaged functions.
test: lint unit package-check

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	bash local/lint-template.sh

# The integration tests run the function binaries on the local AWS: build them first.
# moto is installed on first use by local/moto-venv.sh (pinned, in .venv).
unit: tools
	$(CARGO) build --workspace --bins --locked
	bash local/moto-venv.sh >/dev/null
	$(CARGO) nextest run --workspace --locked --no-fail-fast

tools:
	@$(CARGO) nextest --version 2>/dev/null | grep -q "$(NEXTEST_VERSION)" \
	  || $(CARGO) install cargo-nextest --version $(NEXTEST_VERSION) --locked

## make package: every function built for Lambda by `sam build` (cargo-lambda, zig), in .aws-sam/build.
# ARCH is the template's Architecture parameter: arm64 (deployed default) or x86_64.
ARCH ?= arm64
package:
	bash local/package.sh $(ARCH)

# What would be uploaded starts and answers: each packaged bootstrap against a Lambda Runtime API.
# The machines this runs on have only the x86_64 standard library, so it packages x86_64, with the
# release profile made lighter (16 codegen units, no LTO: a cold build with codegen-units = 1 and
# thin LTO would take a cold `make test` past 45 minutes on two cores), in a target directory of
# its own so that it never invalidates the release build of `make package`.
package-check: tools
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_LTO=off CARGO_TARGET_DIR=$(CURDIR)/target/package-check \
	  bash local/package.sh x86_64
	$(CARGO) nextest run --workspace --locked --no-capture --ignore-default-filter -E 'test(/^package::/)'

## make demo: a bake end to end on the local AWS (moto is installed into .venv on first use).
demo:
	$(CARGO) build --workspace --bins --locked -q
	./target/debug/bakery demo

## make iam-report: every test, with the local AWS writing each authorization it decided into
# target/iam-usage; then, per role of the template, each granted action and whether a test used
# it. It fails on a grant that no test used and no comment in template.yaml explains.
iam-report: tools
	$(CARGO) build --workspace --bins --locked
	bash local/moto-venv.sh >/dev/null
	rm -rf target/iam-usage
	BAKERY_IAM_USAGE=$(CURDIR)/target/iam-usage $(CARGO) nextest run --workspace --locked --no-fail-fast
	./target/debug/bakery iam-report --usage target/iam-usage

## make fuzz: every fuzz target for FUZZ_SECONDS each (libFuzzer through cargo-fuzz).
fuzz:
	@$(CARGO) fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ_VERSION)" \
	  || $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir fuzz $$t fuzz/corpus/$$t events schema/examples \
	    -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 || exit 1; \
	done

## make bench: cold start, memory, size, transitions, fan-out and bake overhead, side by side with
# a Python 3.11 + boto3 handler and a bare lambda_runtime function, in one run (about 15 minutes on
# a warm target/), written to BENCHMARKS.md. Not part of `make test`: benchmarks assert nothing.
bench:
	CARGO=$(CARGO) BENCH_COMMAND="make bench" bash bench/run.sh

## make startup-order: rewrites functions/startup.ld, the start-up code every release build of a
# function puts first (functions/startup-link.rs). Each function's unstripped release build, linked
# without the script (valgrind cannot see into its section), runs under valgrind's callgrind until
# it asks for its first event; needs valgrind, nm and readelf.
# Run it when start-up changes (new clients, SDK upgrades); `make bench` shows what it gains.
FUNCTIONS := trigger start-build build-watch build-events announce gate publish-region
startup-order:
	BAKERY_STARTUP_ORDER=off CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$(CURDIR)/target/startup-order \
	  $(CARGO) build --release --locked $(addprefix -p ,$(FUNCTIONS)) -p bench-bare
	$(CARGO) build --locked -p bench
	./target/debug/bench startup-order target/startup-order/release
