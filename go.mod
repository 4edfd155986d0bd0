module github.com/ota-agent/ota-agent

go 1.26

require github.com/minio/sha256-simd v1.0.1

require (
	github.com/klauspost/cpuid/v2 v2.2.3 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
