//go:build system

package systemtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The peers' configuration on the bench image (TestPeersOS): each set up as its documentation
// says for a U-Boot A/B board with root_a = /dev/vda2 and root_b = /dev/vda3, each checking a
// signature: Mender's ArtifactVerifyKey (ECDSA P-256), RAUC's keyring and SWUpdate's -k (CMS,
// an X.509 certificate). Their daemons are masked: every install is started by hand.

const raucSystemConf = `[system]
compatible=ota-bench
bootloader=uboot
statusfile=/var/lib/rauc.status

[keyring]
path=/etc/rauc/keyring.pem

[slot.rootfs.0]
device=/dev/vda2
type=ext4
bootname=A

[slot.rootfs.1]
device=/dev/vda3
type=ext4
bootname=B
`

// peersOverlay makes the signing keys in the rig's work directory and returns the image's
// additions: the peers' configuration, ota-agent's bench config (no reboot command: the
// measured check stops once the environment asks to try the new slot, as the peers do).
func peersOverlay(r *rig) (files, links map[string]string) {
	keys := filepath.Join(r.work, "peers-keys")
	os.MkdirAll(keys, 0o755)
	if out, err := exec.Command("sh", "-c", `cd "$0" && openssl ecparam -genkey -name prime256v1 -noout -out mender.key &&
openssl ec -in mender.key -pubout -out mender.pub 2>/dev/null &&
openssl req -x509 -newkey rsa:2048 -nodes -keyout cms.key -out cms.crt -subj /CN=ota-bench -days 30 -addext extendedKeyUsage=emailProtection 2>/dev/null`, keys).CombinedOutput(); err != nil {
		r.t.Fatalf("peer keys: %v\n%s", err, out)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(keys, name))
		if err != nil {
			r.t.Fatal(err)
		}
		return string(b)
	}
	bench := strings.Replace(strings.Replace(deviceConfig, "BOOTLOADER", "uboot", 1), "    reboot: systemctl reboot\n", "", 1)
	files = map[string]string{
		"etc/ota-agent/bench.yaml":      bench,
		"etc/ota-agent/bench-full.yaml": strings.Replace(bench, "  payload: metadata\n", "  payload: full\n", 1),
		"etc/mender/mender.conf": `{"RootfsPartA": "/dev/vda2", "RootfsPartB": "/dev/vda3", "ArtifactVerifyKey": "/etc/mender/artifact-verify-key.pem",` +
			` "ServerURL": "http://127.0.0.1:9"}`,
		"etc/mender/artifact-verify-key.pem": read("mender.pub"),
		"etc/mender/artifact_info":           "artifact_name=os-1\n",
		"data/mender/device_type":            "device_type=ota-bench\n", // /var/lib/mender links here
		"etc/rauc/system.conf":               raucSystemConf,
		"etc/rauc/keyring.pem":               read("cms.crt"),
		"etc/swupdate/cms.crt":               read("cms.crt"),
	}
	links = map[string]string{}
	for _, u := range []string{"mender-client.service", "mender-updated.service", "swupdate.service", "swupdate.socket", "swupdate-progress.service"} {
		links["etc/systemd/system/"+u] = "/dev/null"
	}
	return files, links
}

// peersArtifacts builds each peer's signed artifact of the image into the directory the
// host serves at /peers/.
func (r *rig) peersArtifacts(img, sum string) {
	keys := filepath.Join(r.work, "peers-keys")
	www := filepath.Join(r.work, "peers-www")
	os.MkdirAll(www, 0o755)
	r.peers = www
	bundle := filepath.Join(r.work, "peers-bundle")
	os.MkdirAll(bundle, 0o755)
	manifest := "[update]\ncompatible=ota-bench\nversion=2\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.ext4\n"
	os.WriteFile(filepath.Join(bundle, "manifest.raucm"), []byte(manifest), 0o644)
	os.Link(img, filepath.Join(bundle, "rootfs.ext4"))
	swu := filepath.Join(r.work, "peers-swu")
	os.MkdirAll(swu, 0o755)
	os.Link(img, filepath.Join(swu, "os.ext4"))
	desc := fmt.Sprintf(`software = {
  version = "2";
  hardware-compatibility = [ "1.0" ];
  images: ( { filename = "os.ext4"; device = "/dev/vda3"; type = "raw"; sha256 = %q; installed-directly = true; } );
  bootenv: ( { name = "ota_slot"; value = "b"; }, { name = "upgrade_available"; value = "1"; }, { name = "bootcount"; value = "0"; } );
};
`, sum)
	os.WriteFile(filepath.Join(swu, "sw-description"), []byte(desc), 0o644)
	for what, script := range map[string]string{
		"mender-artifact": fmt.Sprintf(`mender-artifact write rootfs-image -f %q -t ota-bench -n os-2 -o %q -k %q --compression none`,
			img, filepath.Join(www, "os.mender"), filepath.Join(keys, "mender.key")),
		"rauc bundle": fmt.Sprintf(`rauc bundle --cert=%q --key=%q %q %q`,
			filepath.Join(keys, "cms.crt"), filepath.Join(keys, "cms.key"), bundle, filepath.Join(www, "os.raucb")),
		"swu": fmt.Sprintf(`cd %q && openssl cms -sign -in sw-description -out sw-description.sig -signer %q -inkey %q -outform DER -nosmimecap -binary &&
printf '%%s\n' sw-description sw-description.sig os.ext4 | cpio -o -H crc --quiet > %q`,
			swu, filepath.Join(keys, "cms.crt"), filepath.Join(keys, "cms.key"), filepath.Join(www, "os.swu")),
	} {
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			r.t.Fatalf("%s: %v\n%s", what, err, out)
		}
	}
}
