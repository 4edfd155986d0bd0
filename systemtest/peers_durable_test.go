//go:build system

package systemtest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The OS row's durability: each agent's install once more under strace (-f -y: every fd shows
// its path), judged on the host. The image is durable when, after the last write to the slot's
// device, the device was flushed (fsync or fdatasync of it, sync, syncfs, BLKFLSBUF, or it was
// opened O_SYNC/O_DSYNC) before the first write that followed into the bootloader environment
// (/boot/firmware): a power cut after the environment asks to try the slot must not boot a
// partly written image.

const traceSyscalls = "openat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync,syncfs,sync_file_range,ioctl,rename,renameat,renameat2,copy_file_range,sendfile,splice"

// traceCmd wraps cmd in strace; a service (RAUC's) is traced by attaching to it instead.
func traceCmd(p peerOSJob) string {
	opts := "-f -ttt -y -s 0 -o /run/peer.trace -e trace=" + traceSyscalls
	filter := " ; grep -E 'vda3|/boot/firmware|sync|BLKFLSBUF|resumed' /run/peer.trace"
	if p.service == "" {
		return "strace --seccomp-bpf " + opts + " sh -c " + shellQuote(p.cmd) + filter
	}
	return fmt.Sprintf("strace %s -p $(systemctl show -p MainPID --value %s) & s=$!; sleep 3; %s; sleep 2; kill -INT $s; wait $s%s", opts, p.service, p.cmd, filter)
}

type traceEvent struct {
	t    float64
	call string
	path string // the fd's path (-y), or the path argument
	args string
}

// parseTrace reads strace -f -ttt -y lines; a call split by another process (<unfinished
// ...>, <... x resumed>) counts when it returned.
func parseTrace(out string) []traceEvent {
	var evs []traceEvent
	pending := map[string]traceEvent{}
	for _, l := range strings.Split(out, "\n") {
		// "PID TIME call(...)"; strace pads the pid with spaces.
		pid, rest, _ := strings.Cut(strings.TrimSpace(l), " ")
		ts, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
		t, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		if strings.HasPrefix(rest, "<... ") {
			if e, ok := pending[pid]; ok {
				e.t = t
				evs = append(evs, e)
				delete(pending, pid)
			}
			continue
		}
		call, args, ok := strings.Cut(rest, "(")
		if !ok {
			continue
		}
		e := traceEvent{t: t, call: call, args: args}
		if i, j := strings.Index(args, "<"), strings.Index(args, ">"); i >= 0 && j > i {
			e.path = args[i+1 : j]
		}
		if strings.HasSuffix(rest, "<unfinished ...>") {
			pending[pid] = e
			continue
		}
		if strings.Contains(rest, ") = -1") {
			continue
		}
		evs = append(evs, e)
	}
	return evs
}

// judgeOS says whether the image was flushed before the environment asked to try it.
func judgeOS(out, dev string) string {
	evs := parseTrace(out)
	lastWrite, syncOpen := -1.0, false
	for _, e := range evs {
		switch {
		case e.call == "openat" && strings.Contains(e.args, `"`+dev+`"`) && (strings.Contains(e.args, "O_SYNC") || strings.Contains(e.args, "O_DSYNC")):
			syncOpen = true
		case isWrite(e.call) && e.path == dev:
			lastWrite = e.t
		}
	}
	if lastWrite < 0 {
		return "no write to " + dev + " seen"
	}
	flushed, env := -1.0, -1.0
	for _, e := range evs {
		if e.t < lastWrite {
			continue
		}
		flush := (e.call == "fsync" || e.call == "fdatasync") && e.path == dev ||
			e.call == "sync" || e.call == "syncfs" || e.call == "ioctl" && e.path == dev && strings.Contains(e.args, "BLKFLSBUF")
		if flush && flushed < 0 {
			flushed = e.t
		}
		if env < 0 && (isWrite(e.call) || strings.HasPrefix(e.call, "rename")) && (strings.HasPrefix(e.path, "/boot/firmware") || strings.Contains(e.args, "/boot/firmware")) {
			env = e.t
		}
	}
	switch {
	case env < 0:
		return "no environment write after the image"
	case syncOpen:
		return "yes (O_SYNC)"
	case flushed >= 0 && flushed <= env:
		return fmt.Sprintf("yes (flushed %s before the env)", time.Duration((env-flushed)*float64(time.Second)).Round(time.Millisecond))
	}
	return "no: the env asked to try a slot whose last bytes were not flushed"
}

func isWrite(call string) bool {
	switch call {
	case "write", "pwrite64", "writev", "pwritev", "pwritev2", "copy_file_range", "sendfile", "splice":
		return true
	}
	return false
}

// TestSystemJudgeOS: the durability judgement on strace lines of the shapes the agents make
// (it runs with make test-system; no board needed).
func TestSystemJudgeOS(t *testing.T) {
	const open = "7     1.000 openat(AT_FDCWD</>, \"/dev/vda3\", O_WRONLY) = 3</dev/vda3>\n"
	const writes = "7 1.100 write(3</dev/vda3>, \"\"..., 1048576) = 1048576\n7 1.200 write(3</dev/vda3>, \"\"..., 1048576 <unfinished ...>\n8 1.250 read(0</x>) = 1\n7 1.300 <... write resumed>) = 1048576\n"
	const env = "9 2.000 openat(AT_FDCWD</>, \"/boot/firmware/uboot.env\", O_WRONLY) = 4</boot/firmware/uboot.env>\n9 2.100 write(4</boot/firmware/uboot.env>, \"\"..., 16384) = 16384\n"
	for _, c := range []struct{ name, trace, want string }{
		{"fsync before the env", open + writes + "7 1.400 fsync(3</dev/vda3>) = 0\n" + env, "yes"},
		{"fsync split by another process", open + writes + "7 1.400 fsync(3</dev/vda3> <unfinished ...>\n9 1.500 read(0</x>) = 1\n7 1.600 <... fsync resumed>) = 0\n" + env, "yes"},
		{"sync after the env", open + writes + env + "7 3.000 sync() = 0\n", "no"},
		{"no flush", open + writes + env, "no"},
		{"flush before the last write", open + "7 1.050 fsync(3</dev/vda3>) = 0\n" + writes + env, "no"},
		{"O_DSYNC", strings.Replace(open, "O_WRONLY", "O_WRONLY|O_DSYNC", 1) + writes + env, "yes"},
		{"env only written before the image", strings.NewReplacer(" 2.000 ", " 0.500 ", " 2.100 ", " 0.600 ").Replace(env) + open + writes + "7 1.400 fsync(3</dev/vda3>) = 0\n", "no environment write"},
		{"failed fsync", open + writes + "7 1.400 fsync(3</dev/vda3>) = -1 EIO (Input/output error)\n" + env, "no"},
	} {
		if got := judgeOS(c.trace, "/dev/vda3"); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %q…", c.name, got, c.want)
		}
	}
}
