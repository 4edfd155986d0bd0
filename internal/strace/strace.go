// Package strace reads `strace -f -y` logs into the calls that decide durability (fsync,
// renames, links, creating opens, sync) and judges, for any program, whether a file's bytes
// were on disk before the name a reader uses showed them. The durability test checks the
// agent with it; the peers bench checks the agent and Mender, RAUC and SWUpdate alike.
package strace

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Calls is the -e trace= list that Parse understands.
const Calls = "trace=fsync,fdatasync,sync,syncfs,rename,renameat,renameat2,link,linkat,symlinkat,open,openat,execve"

// Event is one completed call.
type Event struct {
	Call string // fsync | sync | sync_file_range | rename | link | symlink | create | exec
	Path string // fsync, create: the file or directory; rename, link: the new name; exec: argv as strace shows it
	From string // rename, link: the old name
}

var (
	fdPath   = regexp.MustCompile(`^(?:\d+|AT_FDCWD)<(.*)>$`)
	cwdSeen  = regexp.MustCompile(`AT_FDCWD<([^>]*)>`)
	quoted   = regexp.MustCompile(`^"(.*)"$`)
	callLine = regexp.MustCompile(`^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)`)
)

// Parse turns strace -f -y output into completed calls in order of completion, with paths
// resolved (dirfd-relative names joined to the dirfd's path).
func Parse(file string) ([]Event, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pending := map[string]string{} // pid → the first half of an interrupted call
	cwd := map[string]string{}     // pid → its working directory, as -y last showed it
	var out []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		pid, rest, _ := strings.Cut(sc.Text(), " ")
		if i := strings.Index(rest, " <unfinished ...>"); i >= 0 {
			pending[pid] = strings.TrimSpace(rest[:i])
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(rest), "<... ") {
			_, tail, ok := strings.Cut(rest, "resumed>")
			if !ok {
				continue
			}
			rest = pending[pid] + tail
			delete(pending, pid)
		}
		m := callLine.FindStringSubmatch(pid + " " + strings.TrimSpace(rest))
		if m == nil || strings.HasPrefix(m[3], "-") {
			continue
		}
		if c := cwdSeen.FindStringSubmatch(m[2]); c != nil {
			cwd[pid] = c[1]
		}
		if e, ok := event(m[1], splitArgs(m[2]), cwd[pid]); ok {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// event reads one call; names that no dirfd anchors are taken relative to cwd.
func event(call string, args []string, cwd string) (Event, bool) {
	at := "AT_FDCWD<" + cwd + ">"
	switch call {
	case "fsync", "fdatasync":
		return Event{Call: "fsync", Path: argPath(args[0], "")}, true
	case "sync", "syncfs":
		return Event{Call: "sync"}, true
	case "sync_file_range": // writeback started, not durable: counted, never taken for an fsync
		return Event{Call: call, Path: argPath(args[0], "")}, true
	case "rename", "link":
		return Event{Call: call, From: argPath(args[0], at), Path: argPath(args[1], at)}, true
	case "renameat", "renameat2", "linkat":
		return Event{Call: strings.TrimSuffix(strings.TrimSuffix(call, "2"), "at"), From: argPath(args[1], args[0]), Path: argPath(args[3], args[2])}, true
	case "symlinkat":
		return Event{Call: "symlink", Path: argPath(args[2], args[1])}, true
	case "open", "openat":
		name, flags := args[0], args[1]
		if call == "openat" {
			name, flags = argPath(args[1], args[0]), args[2]
		} else {
			name = argPath(name, at)
		}
		if strings.Contains(flags, "O_CREAT") || strings.Contains(flags, "O_TRUNC") {
			return Event{Call: "create", Path: name}, true
		}
	case "execve":
		return Event{Call: "exec", Path: args[1]}, true
	}
	return Event{}, false
}

// splitArgs splits a strace argument list at top-level commas.
func splitArgs(s string) []string {
	var out []string
	depth, inq, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inq:
			i++
		case c == '"':
			inq = !inq
		case inq:
		case c == '<' || c == '[' || c == '{' || c == '(':
			depth++
		case c == '>' || c == ']' || c == '}' || c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// argPath is the path an argument names: an fd shown by -y, or a string relative to dirfd.
func argPath(arg, dirfd string) string {
	if m := fdPath.FindStringSubmatch(arg); m != nil {
		return m[1]
	}
	name := arg
	if m := quoted.FindStringSubmatch(arg); m != nil {
		name = m[1]
	}
	if filepath.IsAbs(name) || dirfd == "" || dirfd == "AT_FDCWD<>" {
		return name
	}
	if m := fdPath.FindStringSubmatch(dirfd); m != nil {
		return filepath.Join(m[1], name)
	}
	return name
}
