package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ota-agent/ota-agent/internal/publish"
	"github.com/ota-agent/ota-agent/testserver"
	"github.com/spf13/pflag"
)

// awsFlags are serve's flags for a deployment in S3 + DynamoDB (docs/publishing.md).
type awsFlags struct {
	t       publish.Target
	refresh time.Duration
	dir     string
	m       *publish.Mirror
	ctx     context.Context
	cancel  context.CancelFunc
}

func (a *awsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.t.Bucket, "aws-bucket", "", "serve the deployment in this S3 bucket (with --aws-table) instead of --catalog")
	fs.StringVar(&a.t.Table, "aws-table", "", "the deployment's DynamoDB table of rows")
	fs.StringVar(&a.t.Region, "aws-region", "", "AWS region (default: AWS_REGION, or the profile's)")
	fs.StringVar(&a.t.Endpoint, "aws-endpoint", "", "an S3- and DynamoDB-compatible endpoint (moto_server), path-style")
	fs.DurationVar(&a.refresh, "aws-refresh", time.Second, "how often the table and the bucket are read again")
	fs.StringVar(&a.dir, "aws-dir", "", "where the copy of the deployment is kept (default: a temporary directory)")
}

func (a *awsFlags) set() bool { return a.t.Bucket != "" || a.t.Table != "" }

// start copies the deployment into a catalog directory (*catDir) once and keeps a context
// for following it; cleanup ends that and removes a temporary copy.
func (a *awsFlags) start(ctx context.Context, stdout io.Writer, catDir *string) (cleanup func(), err error) {
	if a.t.Bucket == "" || a.t.Table == "" {
		return nil, fmt.Errorf("%w: serve: --aws-bucket and --aws-table go together", errUsage)
	}
	dir := a.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ota-testserver-aws-"); err != nil {
			return nil, err
		}
	}
	a.ctx, a.cancel = context.WithCancel(ctx)
	cleanup = func() {
		a.cancel()
		if a.dir == "" {
			os.RemoveAll(dir)
		}
	}
	d, err := publish.Open(ctx, a.t)
	if err == nil {
		err = d.CheckTable(ctx)
	}
	if err == nil {
		a.m = &publish.Mirror{D: d, Dir: dir}
		_, err = a.sync()
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	*catDir = dir
	fmt.Fprintf(stdout, "serving   bucket %s and table %s (read again every %s; a copy in %s)\n", a.t.Bucket, a.t.Table, a.refresh, dir)
	return cleanup, nil
}

// sync copies what changed, and says which rows were left out.
func (a *awsFlags) sync() (changed bool, err error) {
	changed, skipped, err := a.m.Sync(a.ctx)
	for _, k := range skipped {
		fmt.Fprintf(os.Stderr, "ota-testserver: row %s names an object the bucket lacks: left out\n", k)
	}
	return changed, err
}

// follow reads the deployment again every refresh (nil without one): a changed table or
// bucket reloads the catalog; the edge keeps what it cached until it expires, as CloudFront
// does. It returns what SIGHUP runs before its reload.
func (a *awsFlags) follow(srv *testserver.Server) func() error {
	if a.m == nil {
		return nil
	}
	go func() {
		t := time.NewTicker(a.refresh)
		defer t.Stop()
		for {
			select {
			case <-a.ctx.Done():
				return
			case <-t.C:
			}
			changed, err := a.sync()
			switch {
			case err != nil && a.ctx.Err() == nil:
				fmt.Fprintln(os.Stderr, "ota-testserver: reading the deployment failed, the old catalog stays:", err)
			case changed:
				if err := srv.Reload(); err != nil {
					fmt.Fprintln(os.Stderr, "ota-testserver: reload failed, the old catalog stays:", err)
				}
			}
		}
	}()
	return func() error {
		_, err := a.sync()
		return err
	}
}
