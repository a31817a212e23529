# connector-milter: the commands README.md names.
SWIFT ?= swift

.PHONY: build test bench bench-throughput bench-maps soak fuzz man demo clean deb

build:
	$(SWIFT) build

test:
	bash .ci/test

bench:
	$(SWIFT) build -c release --product policy-bench
	.build/release/policy-bench

clean:
	rm -rf .build

demo:
	bash scripts/demo.sh

# The Debian package: .build-deb/connector-milter_VERSION_amd64.deb (static Swift, lintian-checked).
deb:
	bash scripts/build-deb

# Postfix throughput and CPU per message: no milter, a pass-through C milter (answering every stage,
# and with the fewest round trips), connector-milter with 1,000 connectors, with relay control.
bench-throughput:
	$(SWIFT) build -c release --product connector-milter
	$(SWIFT) build -c release --product policy-bench
	.build/release/policy-bench --emit-policy 1000 > /tmp/connector-bench-policy.yaml
	CONNECTOR_MILTER_BIN=$(CURDIR)/.build/release/connector-milter BENCH_FROM=someone@example.org BENCH_TO=user@contoso.com \
		bash bench/throughput.sh /tmp/connector-bench-policy.yaml

# socketmap lookups over the unix socket, 10 and 10,000 outbound connectors.
bench-maps:
	$(SWIFT) build -c release -Xswiftc -enable-testing --build-tests
	CONNECTOR_BENCH=1 $(SWIFT) test -c release -Xswiftc -enable-testing --skip-build --filter MapsServerBenchmark

# Load and reload soak through a private Postfix: 90 s, 200 concurrent sessions.
soak:
	bash scripts/soak.sh 90 200

# libFuzzer on every parser that reads outside data, 300 s per target.
fuzz:
	bash scripts/fuzz.sh 300

# packaging/connector-milter.8, generated from the commands' own help (swift-argument-parser).
man:
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --section 8 --date 2026-11-29 --authors "connector-milter developers"
	cp .build/plugins/GenerateManual/outputs/connector-milter/connector-milter.8 packaging/connector-milter.8
