package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/publish"
	"github.com/spf13/pflag"
)

// errPending: publish --plan found something to do (exit 3).
var errPending = errors.New("the deployment differs from the catalog")

func publishFlags(fs *pflag.FlagSet) func(*pflag.FlagSet, io.Writer) error {
	dir := fs.String("catalog", "", "the signed catalog directory (catalog.json and the files it names)")
	var t publish.Target
	fs.StringVar(&t.Bucket, "bucket", "", "the firmware bucket (the stack's AppBinaries; the rows' url names it)")
	fs.StringVar(&t.Table, "table", "", "the rows' table (the stack's AppVersionsTable)")
	fs.StringVar(&t.Region, "region", "", "AWS region (default: AWS_REGION, or the profile's)")
	fs.StringVar(&t.Endpoint, "endpoint", "", "an S3- and DynamoDB-compatible endpoint URL (path-style addressing)")
	planOnly := fs.Bool("plan", false, "print the plan and change nothing: exit 0 when in sync, 3 when there is something to do")
	prune := fs.Bool("prune", false, "also delete the rows and objects the catalog does not name (rows first)")
	asJSON := fs.Bool("json", false, "print the plan (and the result) as JSON")
	return func(fs *pflag.FlagSet, stdout io.Writer) error {
		if *dir == "" || t.Bucket == "" || t.Table == "" {
			return usageErr("publish", "--catalog, --bucket and --table are required")
		}
		if fs.NArg() > 0 {
			return usageErr("publish", "unexpected argument %q", fs.Arg(0))
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		c, err := catalog.Load(*dir)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		want, err := publish.Desire(c, t.Bucket)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		d, err := publish.Open(ctx, t)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		have, err := d.Read(ctx)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		p, err := publish.MakePlan(want, have, t, *prune)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if *planOnly {
			if *asJSON {
				printJSON(stdout, p)
			} else {
				p.Print(stdout)
			}
			if !p.InSync() {
				return errPending
			}
			return nil
		}
		var progress publish.Progress
		if !*asJSON {
			p.Print(stdout)
			progress = func(done int, s publish.Step) {
				fmt.Fprintf(stdout, "done %d/%d: %s %s %s\n", done, len(p.Steps), s.Action, s.Kind, s.Name)
			}
		}
		res, err := d.Apply(ctx, p, progress)
		if *asJSON {
			printJSON(stdout, res)
		}
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if !*asJSON && !p.InSync() {
			fmt.Fprintf(stdout, "published: %d steps, %s uploaded; the deployment matches the catalog\n", res.Done, protocol.HumanBytes(res.Uploaded))
		}
		return nil
	}
}

func printJSON(w io.Writer, v any) {
	raw, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(w, "%s\n", raw)
}
