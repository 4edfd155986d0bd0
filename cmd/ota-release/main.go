// Command ota-release is the publisher's offline tool: make release keys, sign a catalog.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/packaging"
)

const usage = `usage:
  ota-release keygen --out NAME            writes NAME.pem (PKCS#8) and NAME.pub.pem (PKIX)
  ota-release sign --key KEY.pem --catalog DIR
                                           signs every row, assigning serials, and writes
                                           <binary>.release beside each binary
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ota-release:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command given")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "keygen":
		out := fs.String("out", "", "file name prefix")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("keygen: --out NAME is required")
		}
		priv, pub, err := packaging.GenerateKey()
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out+".pem", priv, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(*out+".pub.pem", pub, 0o644); err != nil {
			return err
		}
		k, _ := packaging.ParsePublicKeyPEM(pub)
		fmt.Fprintf(stdout, "wrote %s.pem and %s.pub.pem (keyid %s)\n", *out, *out, packaging.KeyID(k))
		return nil
	case "sign":
		key := fs.String("key", "", "Ed25519 private key (PEM)")
		dir := fs.String("catalog", "", "catalog directory")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *key == "" || *dir == "" {
			return errors.New("sign: --key and --catalog are required")
		}
		priv, err := os.ReadFile(*key)
		if err != nil {
			return err
		}
		c, err := catalog.Load(*dir)
		if err != nil {
			return err
		}
		if err := c.SignRows(priv); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed %d rows in %s\n", len(c.Rows), *dir)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
