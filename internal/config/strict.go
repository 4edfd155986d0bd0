package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// StrictModes refuses, when the agent runs as root, a file it trusts that another user could
// have written, as sshd's StrictModes does: the configuration, trust keys, CA and client
// certificate files, and every absolute path named in a hook or the reboot command. The file
// and each directory above it must be owned by root and not writable by group or others (a
// directory with the sticky bit, such as /tmp, may be). The agent runs hooks as root and
// installs what the keys vouch for: a file someone else can change is a way to root.
func StrictModes(cfg *Config) error {
	if os.Geteuid() != 0 {
		return nil
	}
	type named struct{ key, path string }
	var files []named
	if cfg.File != "" {
		files = append(files, named{"the configuration", cfg.File})
	}
	for _, k := range cfg.Trust.Keys {
		files = append(files, named{"trust.keys", cfg.Path(k)})
	}
	for key, p := range map[string]string{"server.ca_file": cfg.Server.CAFile, "server.client_cert": cfg.Server.ClientCert, "server.client_key": cfg.Server.ClientKey,
		"report.ca_file": cfg.Report.CAFile, "report.client_cert": cfg.Report.ClientCert, "report.client_key": cfg.Report.ClientKey, "report.token_file": cfg.Report.TokenFile} {
		if p != "" {
			files = append(files, named{key, cfg.Path(p)})
		}
	}
	for key, command := range map[string]string{"hooks.health": cfg.Hooks.Health, "hooks.pre_install": cfg.Hooks.PreInstall,
		"hooks.post_commit": cfg.Hooks.PostCommit, "slots.os.reboot": cfg.Slots.OS.Reboot} {
		for _, word := range strings.Fields(command) {
			word = strings.Trim(word, `'";`)
			if filepath.IsAbs(word) {
				if fi, err := os.Stat(word); err == nil && fi.Mode().IsRegular() { // a script or program, not /dev/null
					files = append(files, named{key, word})
				}
			}
		}
	}
	for _, f := range files {
		if err := trustedPath(f.path); err != nil {
			return fmt.Errorf("%w: %s (%s): %v; the agent runs as root and will not trust it", ErrConfig, f.path, f.key, err)
		}
	}
	return nil
}

// trustedPath checks path and every directory above it.
func trustedPath(path string) error {
	p, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for first := true; ; first = false {
		fi, err := os.Stat(p)
		if err != nil {
			if first {
				return nil // a missing file gets its own error where it is read
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case ok && st.Uid != 0:
			return fmt.Errorf("%s is owned by uid %d, not root (chown root %s)", p, st.Uid, p)
		case fi.Mode().Perm()&0o022 != 0 && !(fi.IsDir() && fi.Mode()&os.ModeSticky != 0):
			return fmt.Errorf("%s is writable by group or others (mode %04o; chmod go-w %s)", p, fi.Mode().Perm(), p)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}
