package testenv

// PeerOSRun is one agent's OS-image install inside the booted board, as systemtest's
// TestPeersOS reports it and make bench-peers reads it (a JSON file between the two).
type PeerOSRun struct {
	Agent   string  `json:"agent"`
	Mode    string  `json:"mode"`
	Source  string  `json:"source"`
	RC      int     `json:"rc"`
	WallS   float64 `json:"wall_s"`
	CPUS    float64 `json:"cpu_s"`
	RSSKB   int64   `json:"maxrss_kb"`
	EnvS    float64 `json:"env_s"` // when the bootloader environment first asked to try the slot (-1: never)
	Net     int64   `json:"net_bytes"`
	Written bool    `json:"written"`       // the slot read back as the image
	Outside int64   `json:"outside_bytes"` // written to the disk outside the slot during the run
	Durable string  `json:"durable"`       // the strace judgement
	Output  string  `json:"output"`
}

// PeerOSReport is the whole OS-image run.
type PeerOSReport struct {
	Size     int64       `json:"size"`
	Kernel   string      `json:"kernel"`
	Versions string      `json:"versions"`
	Runs     []PeerOSRun `json:"runs"`
}
