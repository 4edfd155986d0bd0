// Package store is the agent's bbolt database: an index and a journal of what is installed,
// never the only truth of which slot is active (the slot manifests are). Nothing else in the
// project imports bbolt. Every key lives in this file.
package store

// Buckets and keys. Values are small JSON documents (32-bit ARM has little address space).
var (
	bucketAgent     = []byte("agent")     // single-value records below
	bucketRefused   = []byte("refused")   // md5 → Refusal
	bucketDownloads = []byte("downloads") // "<app>_<version>" → Progress
	bucketModes     = []byte("modes")     // server URL → payload mode learnt ("metadata" after a 405)
	bucketChunks    = []byte("chunks")    // sha256 of a file the device holds → its chunk list (JSON)
	bucketOutbox    = []byte("outbox")    // 8-byte big-endian sequence → a device report's event (JSON)

	keySchema    = []byte("schema")      // schemaVersion
	keyState     = []byte("state")       // State: the active generation
	keyJournal   = []byte("journal")     // Journal: the update in progress, written before each step
	keyLastCheck = []byte("last_check")  // CheckRecord
	keyTimeFloor = []byte("time_floor")  // unix seconds, never decreases
	keyOS        = []byte("os")          // OSState: partition slots
	keyVerify    = []byte("last_verify") // VerifyRecord
	keyCounters  = []byte("counters")    // Counters: running totals for the metrics
	keyAttempts  = []byte("attempts")    // md5 → failed installs of that release (install.max_attempts)
	keyStaged    = []byte("staged")      // Generation sealed in the inactive slot, waiting for an install window
	keyTrust     = []byte("trust")       // Trust: the adopted key set, the newest timestamp
	keyShadowed  = []byte("shadowed")    // md5 → Shadow: rows of pinned apps from other channels
	keyReceipts  = []byte("receipts")    // md5 → SHA-256s of bytes received for that release that failed verification
	keyDeferred  = []byte("deferred")    // md5 → Deferral: releases a phased rollout keeps out for now
	keyOutbox    = []byte("outbox")      // OutboxMeta: the device reports' sequence, drops, backoff
)

const schemaVersion = "2"

// Schema 1's keys, read once by migrate (schema 2 folded them into the journal).
var (
	keyPendingV1 = []byte("pending") // Generation being switched to
	keyMachineV1 = []byte("machine") // {state, since}: a breadcrumb only
)
