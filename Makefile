# Conveniences; README.md gives the commands these wrap.

.PHONY: run test bench bench-all bench-floor fuzz soak

run:
	go run ./cmd/citybridge

test:
	scripts/test

# The 116-subscriber point of the fan-out benchmark: one JSON line.
bench:
	go run ./bench/fanout -n 116

# The whole curve, single layer then simulcast, with server profiles.
bench-all:
	go run ./bench/fanout -n 25,50,116,250,400 -cpuprofile bench/out/single
	go run ./bench/fanout -n 25,50,116,250 -layers 3 -cpuprofile bench/out/simulcast

# The forwarding loop and the physical floor (SRTP + one UDP send).
bench-floor:
	go test -run '^$$' -bench 'BenchmarkForwardPacket|BenchmarkSRTPSendFloor|BenchmarkFanOutSpread' -benchtime 2s -count 6 ./sfu

# Every fuzz target for FUZZTIME each (CI runs a few thousand inputs).
FUZZTIME ?= 60s
fuzz:
	go test -run '^$$' -fuzz '^FuzzKeyframeDetect$$' -fuzztime $(FUZZTIME) ./sfu
	go test -run '^$$' -fuzz '^FuzzVP8Desc$$' -fuzztime $(FUZZTIME) ./sfu
	go test -run '^$$' -fuzz '^FuzzSDPOffer$$' -fuzztime $(FUZZTIME) ./sfu
	go test -run '^$$' -fuzz '^FuzzSignalingMessage$$' -fuzztime $(FUZZTIME) ./signaling/wire
	go test -run '^$$' -fuzz '^FuzzBridgeCSV$$' -fuzztime $(FUZZTIME) ./controlplane
	go test -run '^$$' -fuzz '^FuzzBridgeExportImport$$' -fuzztime $(FUZZTIME) ./controlplane
	go test -run '^$$' -fuzz '^FuzzCSVCell$$' -fuzztime $(FUZZTIME) ./controlplane
	go test -run '^$$' -fuzz '^FuzzAPIBody$$' -fuzztime $(FUZZTIME) ./controlplane

# A meeting's length: 116 synthetic rooms and the hub, steady, against a
# server of its own; its RSS, heap, goroutines and CPU every minute
# (scripts/soak says where the figures go).
SOAK ?= 3h
soak:
	SOAK=$(SOAK) scripts/soak
