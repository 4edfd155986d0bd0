package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrNotPublished: the document is not on the CDN (404), which is not an error.
var ErrNotPublished = errors.New("not published")

// FetchSmall gets a small document (a trust document, a chunk index) of at most limit bytes
// with If-None-Match etag: same is true on a 304; 404 and 403 are ErrNotPublished.
func FetchSmall(ctx context.Context, c *http.Client, u, etag string, limit int64) (body []byte, newETag string, same bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", false, err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, true, nil
	case http.StatusOK:
		body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err == nil && int64(len(body)) > limit {
			err = fmt.Errorf("%s: larger than %d bytes", Redact(u), limit)
		}
		return body, resp.Header.Get("ETag"), false, err
	case http.StatusNotFound, http.StatusForbidden: // S3 without list permission answers 403
		io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBody))
		return nil, "", false, ErrNotPublished
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBody))
	return nil, "", false, fmt.Errorf("%s answered %s", Redact(u), resp.Status)
}
