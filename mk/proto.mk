# langgate's protobuf definitions (proto/): buf and protoc-gen-go from the Go
# module proxy, pinned here, built into bin/. Included by the Makefile.
#
#   make proto        regenerate proto/**/*.pb.go
#   make proto-check  lint the definitions and fail if the committed code is
#                     not what they generate (a `make test` step)

BUF_VERSION          := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTO_BIN            := $(CURDIR)/bin/proto

TEST_DEPS += proto-check

.PHONY: proto proto-check proto-tools

proto-tools:
	@mkdir -p $(PROTO_BIN)
	@[ -x $(PROTO_BIN)/buf ] && [ "$$($(PROTO_BIN)/buf --version)" = "$(BUF_VERSION:v%=%)" ] || \
		GOBIN=$(PROTO_BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@[ -x $(PROTO_BIN)/protoc-gen-go ] && [ "$$($(PROTO_BIN)/protoc-gen-go --version)" = "protoc-gen-go $(PROTOC_GEN_GO_VERSION)" ] || \
		GOBIN=$(PROTO_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

proto: proto-tools
	cd proto && PATH=$(PROTO_BIN):$$PATH buf generate

proto-check: proto-tools
	@cd proto && PATH=$(PROTO_BIN):$$PATH buf lint
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
		cp -r proto $$tmp/; \
		(cd $$tmp/proto && PATH=$(PROTO_BIN):$$PATH buf generate) && \
		diff -r proto $$tmp/proto && echo "proto: generated code is current"
