# connector-milter: the commands README.md names.
SWIFT ?= swift

.PHONY: build test bench bench-throughput demo clean

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

bench-throughput: build
	bash bench/throughput.sh $(POLICY)
