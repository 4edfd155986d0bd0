// Command ota-systest-guest runs inside the test images of `make test-system` only (never in
// a product image): it asks the host's control endpoint for shell commands, runs them, and
// posts back their output and exit code. The guest reaches nothing but the host's test ports.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

type command struct {
	ID      int    `json:"id"`
	Cmd     string `json:"cmd"`
	Timeout int    `json:"timeout"` // seconds
}

type result struct {
	ID     int    `json:"id"`
	Boot   string `json:"boot"`
	RC     int    `json:"rc"`
	Output string `json:"output"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "measure" {
		measureMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "fetch" {
		fetchMain(os.Args[2:])
		return
	}
	base := "http://10.0.2.100:9000"
	if len(os.Args) > 1 {
		base = os.Args[1]
	}
	raw, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	boot := strings.TrimSpace(string(raw))
	client := &http.Client{Timeout: 90 * time.Second}
	fmt.Println("OTA-SYSTEST: guest helper up, boot", boot)
	for {
		resp, err := client.Get(base + "/next?boot=" + boot)
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		var c command
		err = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		if err != nil || c.ID == 0 {
			continue // long poll ended without a command
		}
		r := run(c)
		r.Boot = boot
		body, _ := json.Marshal(r)
		for i := 0; i < 30; i++ {
			resp, err := client.Post(base+"/result", "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
				break
			}
			time.Sleep(time.Second)
		}
	}
}

func run(c command) result {
	d := time.Duration(c.Timeout) * time.Second
	if d <= 0 {
		d = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.Cmd)
	out, err := cmd.CombinedOutput()
	rc := 0
	if err != nil {
		rc = -1
		if ee, ok := err.(*exec.ExitError); ok {
			rc = ee.ExitCode()
		}
		if ctx.Err() != nil {
			out = append(out, []byte("\n(timed out)")...)
			rc = 124
		}
	}
	return result{ID: c.ID, RC: rc, Output: string(out)}
}
