package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// mender drives mender-client 3.4 standalone (`mender install URL`, then `mender commit`)
// with its single-file or directory update module, signed artifacts (ECDSA P-256, the
// strongest mender-artifact 3.9 offers) checked by ArtifactVerifyKey.
func (w *peerWorld) mender(module string) variant {
	d := w.menderDevice("mender-"+module, `"ServerURL": "http://127.0.0.1:9"`)
	dest := filepath.Join(d.dir, "dest")
	arts := map[int][]string{}
	for step := range appSteps {
		if module == "directory" {
			arts[step] = []string{w.menderArtifact(fmt.Sprintf("dir-%d", step), "directory", dest, w.full(step))}
			continue
		}
		for _, a := range sortedKeys(w.job(step)) {
			arts[step] = append(arts[step], w.menderArtifact(fmt.Sprintf("%s-%d", a, step), "single-file", dest, map[string]string{a: w.job(step)[a]}))
		}
	}
	return variant{agent: "Mender", mode: module,
		fresh: func() {
			os.RemoveAll(dest)
			d.fresh()
		},
		step: func(x *runner, step int) {
			for _, art := range arts[step] {
				x.cmd(nil, "mender", d.args("install", w.fs.base+"/"+art)...)
				x.cmd(nil, "mender", d.args("commit")...)
			}
		},
		files: func(step int) []string { return w.installedUnder(dest, step) },
		net:   func() int64 { return w.fs.sent.Load() },
	}
}

// menderDevice is one Mender client's configuration and data directory under w.dir/name;
// conf is the JSON members beside ArtifactVerifyKey.
type menderDevice struct{ dir string }

func (w *peerWorld) menderDevice(name, conf string) menderDevice {
	d := menderDevice{filepath.Join(w.dir, name)}
	must(os.MkdirAll(d.dir, 0o755))
	must(os.WriteFile(filepath.Join(d.dir, "mender.conf"), []byte(fmt.Sprintf(`{"ArtifactVerifyKey": %q, %s}`, filepath.Join(w.dir, "mender.pub"), conf)), 0o644))
	must(os.WriteFile(filepath.Join(d.dir, "fallback.conf"), []byte("{}"), 0o644))
	// mender reads the name of the artifact a device was born with from here, whatever --data says.
	if _, err := os.Stat("/etc/mender/artifact_info"); err != nil {
		must(os.MkdirAll("/etc/mender", 0o755))
		must(os.WriteFile("/etc/mender/artifact_info", []byte("artifact_name=bench-initial\n"), 0o644))
	}
	return d
}

// fresh empties the data directory: a device that never installed anything.
func (d menderDevice) fresh() {
	data := filepath.Join(d.dir, "data")
	os.RemoveAll(data)
	must(os.MkdirAll(data, 0o755))
	must(os.WriteFile(filepath.Join(data, "device_type"), []byte("device_type=bench\n"), 0o644))
}

// args are the global options, then the command's.
func (d menderDevice) args(cmd ...string) []string {
	return append([]string{"--config", filepath.Join(d.dir, "mender.conf"), "--fallback-config", filepath.Join(d.dir, "fallback.conf"),
		"--data", filepath.Join(d.dir, "data"), "--no-syslog"}, cmd...)
}

// menderArtifact writes a signed module artifact into www and returns its name there.
func (w *peerWorld) menderArtifact(name, module, dest string, files map[string]string) string {
	tmp := filepath.Join(w.dir, "build-"+name)
	os.RemoveAll(tmp)
	must(os.MkdirAll(tmp, 0o755))
	defer os.RemoveAll(tmp)
	must(os.WriteFile(filepath.Join(tmp, "dest_dir"), []byte(dest), 0o644))
	var payload []string
	if module == "directory" {
		tree := filepath.Join(tmp, "tree")
		must(os.MkdirAll(tree, 0o755))
		for a, src := range files {
			link(src, filepath.Join(tree, a))
		}
		sh(fmt.Sprintf("tar -C %q -cf %q .", tree, filepath.Join(tmp, "update.tar")))
		payload = []string{"update.tar", "dest_dir"}
	} else {
		for a, src := range files {
			link(src, filepath.Join(tmp, a))
			must(os.WriteFile(filepath.Join(tmp, "filename"), []byte(a), 0o644))
			payload = []string{"dest_dir", "filename", a}
		}
	}
	out := name + ".mender"
	sh(fmt.Sprintf("cd %q && mender-artifact write module-image -T %s -t bench -n bench-%s -o %q -k %q --compression none -f %s",
		tmp, module, name, filepath.Join(w.www, out), filepath.Join(w.dir, "mender.key"), strings.Join(payload, " -f ")))
	return out
}

// swupdate drives SWUpdate 2022.12's own downloader (`swupdate -d "-u URL"`) with its files
// handler, a CMS-signed sw-description checked against -k. The operator builds a .swu of
// just what changed (SWUpdate has no way to ask the device).
func (w *peerWorld) swupdate() variant {
	dest := filepath.Join(w.dir, "swupdate-dest")
	swus := map[int]string{}
	for step := range appSteps {
		swus[step] = w.swu(fmt.Sprintf("apps-%d", step), dest, w.job(step))
	}
	return variant{agent: "SWUpdate", mode: "files",
		fresh: func() {
			os.RemoveAll(dest)
			must(os.MkdirAll(dest, 0o755))
		},
		step: func(x *runner, step int) {
			x.cmd(nil, "swupdate", "-H", "bench:1.0", "-k", filepath.Join(w.dir, "swu.crt"), "-d", "-u "+w.fs.base+"/"+swus[step])
		},
		files: func(step int) []string { return w.installedUnder(dest, step) },
		net:   func() int64 { return w.fs.sent.Load() },
	}
}

// swu writes a signed .swu (cpio: sw-description, its CMS signature, the files) into www.
func (w *peerWorld) swu(name, dest string, files map[string]string) string {
	tmp := filepath.Join(w.dir, "build-"+name)
	os.RemoveAll(tmp)
	must(os.MkdirAll(tmp, 0o755))
	defer os.RemoveAll(tmp)
	var entries []string
	for _, a := range sortedKeys(files) {
		link(files[a], filepath.Join(tmp, a))
		sum := strings.Fields(sh(fmt.Sprintf("sha256sum %q", files[a])))[0]
		entries = append(entries, fmt.Sprintf("    { filename = %q; path = %q; sha256 = %q; installed-directly = true; }", a, filepath.Join(dest, a), sum))
	}
	desc := fmt.Sprintf("software = {\n  version = \"1.0.0\";\n  hardware-compatibility = [ \"1.0\" ];\n  files: (\n%s\n  );\n};\n", strings.Join(entries, ",\n"))
	must(os.WriteFile(filepath.Join(tmp, "sw-description"), []byte(desc), 0o644))
	out := name + ".swu"
	sh(fmt.Sprintf(`cd %q && openssl cms -sign -in sw-description -out sw-description.sig -signer %q -inkey %q -outform DER -nosmimecap -binary &&
printf '%%s\n' sw-description sw-description.sig %s | cpio -o -H crc --quiet > %q`,
		tmp, filepath.Join(w.dir, "swu.crt"), filepath.Join(w.dir, "swu.key"), strings.Join(sortedKeys(files), " "), filepath.Join(w.www, out)))
	return out
}
