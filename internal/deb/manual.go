package deb

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
)

// Command is what a program says of itself with --help: its usage text and, for each of its
// commands, the command's --help text and flags. Man pages and shell completion are made from
// it, so they say what --help says.
type Command struct {
	Name    string
	Usage   string            // `NAME help`
	Subs    []string          // commands, in the usage's order ("keys rotate": two words)
	SubHelp map[string]string // `NAME SUB --help`
	Flags   map[string][]string
}

// HelpOf runs the program bin (built for this machine) and reads its help texts.
func HelpOf(bin, name string) (*Command, error) {
	usage, err := exec.Command(bin, "help").Output()
	if err != nil {
		return nil, fmt.Errorf("%s help: %w", bin, err)
	}
	c := &Command{Name: name, Usage: string(usage), SubHelp: map[string]string{}, Flags: map[string][]string{}}
	c.Subs = subcommands(name, c.Usage)
	if len(c.Subs) == 0 {
		return nil, fmt.Errorf("%s help lists no commands", bin)
	}
	for _, sub := range c.Subs {
		out, err := exec.Command(bin, append(strings.Fields(sub), "--help")...).Output()
		if err != nil {
			return nil, fmt.Errorf("%s %s --help: %w", bin, sub, err)
		}
		c.SubHelp[sub] = string(out)
		c.Flags[sub] = flagsOf(string(out))
	}
	return c, nil
}

// subcommands reads the commands from a usage text: the lines "  NAME CMD ..." (ota-release,
// ota-testserver) or the indented lines of its "commands:" section (ota-agent).
func subcommands(name, usage string) []string {
	var out []string
	inCommands := false
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "commands:":
			inCommands = true
			continue
		case line == "" || !strings.HasPrefix(line, "  "):
			inCommands = false
		}
		f := strings.Fields(line)
		var sub string
		switch {
		case len(f) >= 2 && f[0] == name:
			sub = f[1]
			if sub == "keys" && len(f) > 2 {
				sub += " " + f[2]
			}
		case inCommands && len(f) > 0 && !strings.HasPrefix(f[0], "-") && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   "):
			sub = f[0]
		}
		if sub != "" && sub != strings.ToUpper(sub) && !strings.HasPrefix(sub, "-") && !strings.HasPrefix(sub, "[") && !strings.HasPrefix(sub, "(") && !slices.Contains(out, sub) {
			out = append(out, sub)
		}
	}
	return out
}

var flagLine = regexp.MustCompile(`^\s+(?:-([a-zA-Z]), )?--([a-z0-9][a-z0-9-]*)`)

// flagsOf lists the long flags of a --help text's flag lines.
func flagsOf(help string) []string {
	var out []string
	for _, line := range strings.Split(help, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			out = append(out, "--"+m[2])
		}
	}
	return out
}

// roff escapes text for a man page's no-fill block.
func roff(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		line = roffLine(line)
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = `\&` + line
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Man is the command's man page in section sec: its usage, then each command's --help.
func (c *Command) Man(sec, title, version string, when time.Time, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s %q %q %q\n", strings.ToUpper(c.Name), sec, when.UTC().Format("2006-01-02"), c.Name+" "+version, title)
	first, _, _ := strings.Cut(c.Usage, "\n")
	_, what, _ := strings.Cut(first, ": ")
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", c.Name, roffLine(strings.TrimSuffix(what, ".")))
	fmt.Fprintf(&b, ".SH SYNOPSIS\n.nf\n%s.fi\n", roff(c.Usage))
	b.WriteString(".SH COMMANDS\n")
	for _, sub := range c.Subs {
		fmt.Fprintf(&b, ".SS %s\n.nf\n%s.fi\n", sub, roff(c.SubHelp[sub]))
	}
	b.WriteString(extra)
	return b.String()
}

func roffLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\e`), "-", `\-`)
}

// ConfigMan is ota-agent.yaml(5): every key of the configuration (config.Keys, with its
// default), its meaning from the README's table, and the annotated example.
func ConfigMan(version string, when time.Time, readme, example string) string {
	meaning := map[string]string{}
	row := regexp.MustCompile("^\\| `([a-z0-9_.<>]+)` \\|([^|]*)\\| (.*) \\|$")
	for _, line := range strings.Split(readme, "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			meaning[m[1]] = strings.ReplaceAll(m[3], "`", "")
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, ".TH OTA-AGENT.YAML 5 %q %q \"File Formats\"\n", when.UTC().Format("2006-01-02"), "ota-agent "+version)
	b.WriteString(".SH NAME\nota-agent.yaml \\- the configuration of ota\\-agent (/etc/ota\\-agent/config.yaml)\n")
	b.WriteString(".SH DESCRIPTION\nA YAML file of the keys below. OTA_AGENT_* environment variables override the file (OTA_AGENT_SERVER_URL for server.url), and the command line's flags override both. An unknown key or a bad value is an error that names the key.\n")
	b.WriteString(".SH KEYS\n")
	for _, k := range config.Keys() {
		def := k.Default
		switch {
		case k.Map:
			def = "{}"
		case k.List:
			def = "[]"
		case def == "":
			def = `""`
		}
		fmt.Fprintf(&b, ".TP\n.B %s\n(default %s) %s\n", k.Key, roffLine(def), roffLine(meaning[k.Key]))
	}
	fmt.Fprintf(&b, ".SH EXAMPLE\nThe file the package installs, every key with its default:\n.nf\n%s.fi\n", roff(example))
	b.WriteString(".SH SEE ALSO\n.BR ota-agent (8)\n")
	return b.String()
}

// Completion is a bash completion script for the command: its commands, each command's
// flags, and the flags every command takes before the command too. The word after a flag
// that takes a value completes as a file name.
func (c *Command) Completion() string {
	fn := "_" + strings.ReplaceAll(c.Name, "-", "_")
	var top, valued []string
	common := slices.Clone(c.Flags[c.Subs[0]])
	for _, sub := range c.Subs {
		first, _, _ := strings.Cut(sub, " ")
		if !slices.Contains(top, first) {
			top = append(top, first)
		}
		common = slices.DeleteFunc(common, func(f string) bool { return !slices.Contains(c.Flags[sub], f) })
		for _, f := range valuedFlags(c.SubHelp[sub]) {
			if !slices.Contains(valued, f) {
				valued = append(valued, f)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s, made from its --help (make deb)\n", c.Name)
	fmt.Fprintf(&b, "%s() {\n\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} sub= skip= w\n", fn)
	fmt.Fprintf(&b, "\tlocal valued=%q\n", " "+strings.Join(valued, " ")+" ")
	b.WriteString("\tcase $valued in *\" $prev \"*) COMPREPLY=(); return ;; esac\n")
	b.WriteString("\tfor w in \"${COMP_WORDS[@]:1:COMP_CWORD-1}\"; do\n")
	b.WriteString("\t\tif [ -n \"$skip\" ]; then skip=; continue; fi\n")
	b.WriteString("\t\tcase $valued in *\" $w \"*) skip=1; continue ;; esac\n")
	b.WriteString("\t\tcase $w in -*) ;; *) sub=${sub:+$sub }$w ;; esac\n\tdone\n")
	b.WriteString("\tcase $sub in\n")
	for _, sub := range c.Subs {
		fmt.Fprintf(&b, "\t%q*) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", sub, strings.Join(c.Flags[sub], " "))
	}
	if slices.Contains(c.Subs, "keys rotate") {
		b.WriteString("\tkeys) COMPREPLY=($(compgen -W \"rotate\" -- \"$cur\")) ;;\n")
	}
	fmt.Fprintf(&b, "\t*) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", strings.Join(append(append(top, "help", "--version"), common...), " "))
	fmt.Fprintf(&b, "\tesac\n}\ncomplete -o default -F %s %s\n", fn, c.Name)
	return b.String()
}

var valuedLine = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?(--[a-z0-9][a-z0-9-]*) [a-zA-Z]`)

// valuedFlags are the flags of a --help text that take a value ("--config string").
func valuedFlags(help string) []string {
	var out []string
	for _, line := range strings.Split(help, "\n") {
		if m := valuedLine.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line[len(m[0])-1:], "this") {
			out = append(out, m[1])
		}
	}
	return out
}
