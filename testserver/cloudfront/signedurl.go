// Package cloudfront is CloudFront's signed URLs, as the fake firmware CDN enforces them with
// trusted key groups and a publisher's backend makes them: canned and custom policies,
// RSA-SHA1 signatures, CloudFront's URL-safe base64.
package cloudfront

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
)

// CloudFront's URL-safe base64: + = / become - _ ~.
var cfB64 = strings.NewReplacer("+", "-", "=", "_", "/", "~")
var cfB64Back = strings.NewReplacer("-", "+", "_", "=", "~", "/")

type cfPolicy struct {
	Statement []struct {
		Resource  string `json:"Resource"`
		Condition struct {
			DateLessThan    map[string]int64 `json:"DateLessThan"`
			DateGreaterThan map[string]int64 `json:"DateGreaterThan,omitempty"`
		} `json:"Condition"`
	} `json:"Statement"`
}

func cannedPolicy(resource string, expires int64) string {
	return fmt.Sprintf(`{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, resource, expires)
}

// Verifier enforces CloudFront signed URLs with trusted key groups.
type Verifier struct {
	Keys map[string]*rsa.PublicKey // Key-Pair-Id → key
}

// Check returns CloudFront's error code and message for a request that must be refused
// ("", "" for one that may pass).
func (v *Verifier) Check(r *http.Request, now time.Time) (string, string) {
	q := r.URL.Query()
	kp := q.Get("Key-Pair-Id")
	if kp == "" {
		return "MissingKey", "Missing Key-Pair-Id query parameter or cookie value"
	}
	pub := v.Keys[kp]
	if pub == nil {
		return "InvalidKey", "Unknown Key"
	}
	sig, err := base64.StdEncoding.DecodeString(cfB64Back.Replace(q.Get("Signature")))
	if err != nil || len(sig) == 0 {
		return "MalformedSignature", "Could not unencode Signature"
	}
	resource := requestResource(r)
	var policy string
	if p := q.Get("Policy"); p != "" {
		raw, err := base64.StdEncoding.DecodeString(cfB64Back.Replace(p))
		var pol cfPolicy
		if err != nil || json.Unmarshal(raw, &pol) != nil || len(pol.Statement) != 1 {
			return "MalformedPolicy", "Malformed Policy"
		}
		policy = string(raw)
		st := pol.Statement[0]
		exp, ok := st.Condition.DateLessThan["AWS:EpochTime"]
		if !ok {
			return "MalformedPolicy", "Malformed Policy"
		}
		if now.Unix() >= exp || !wildcardMatch(st.Resource, resource) {
			return "AccessDenied", "Access denied"
		}
		if start, ok := st.Condition.DateGreaterThan["AWS:EpochTime"]; ok && now.Unix() <= start {
			return "AccessDenied", "Access denied"
		}
	} else {
		exp, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
		if err != nil {
			return "MalformedPolicy", "Malformed Policy"
		}
		if now.Unix() >= exp {
			return "AccessDenied", "Access denied"
		}
		policy = cannedPolicy(resource, exp)
	}
	h, hash := crypto.SHA1, sha1.Sum([]byte(policy))
	digest := hash[:]
	if strings.EqualFold(q.Get("Hash-Algorithm"), "SHA256") {
		s := sha256.Sum256([]byte(policy))
		h, digest = crypto.SHA256, s[:]
	}
	if rsa.VerifyPKCS1v15(pub, h, digest, sig) != nil {
		return "AccessDenied", "Access denied"
	}
	return "", ""
}

// requestResource is the URL CloudFront compares with the policy: scheme, host, path and
// the query without the signing parameters.
func requestResource(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := r.URL.Query()
	for _, k := range []string{"Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"} {
		q.Del(k)
	}
	u := scheme + "://" + r.Host + r.URL.Path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func wildcardMatch(pattern, s string) bool {
	re := "^" + strings.ReplaceAll(strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*"), `\?`, ".") + "$"
	ok, _ := regexp.MatchString(re, s)
	return ok
}

// Encode is CloudFront's URL-safe base64 of b.
func Encode(b []byte) string { return cfB64.Replace(base64.StdEncoding.EncodeToString(b)) }

// Signer makes signed URLs, as the publisher's backend would: canned policies (the exact
// object), or with Prefix custom policies for the object and what is published beside it
// (its patches: `<url>*`).
type Signer struct {
	KeyPairID string
	Key       *rsa.PrivateKey
	TTL       time.Duration
	Now       func() time.Time
	Prefix    bool
}

// Sign returns rawURL with Expires (or Policy), Signature and Key-Pair-Id.
func (s *Signer) Sign(rawURL string) string {
	exp := s.Now().Add(s.TTL).Unix()
	policy, param := cannedPolicy(rawURL, exp), "Expires="+strconv.FormatInt(exp, 10)
	if s.Prefix {
		policy = cannedPolicy(rawURL+"*", exp)
		param = "Policy=" + Encode([]byte(policy))
	}
	h := sha1.Sum([]byte(policy))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, s.Key, crypto.SHA1, h[:])
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	return rawURL + sep + param + "&Signature=" + Encode(sig) + "&Key-Pair-Id=" + url.QueryEscape(s.KeyPairID)
}

// ParseRSAPublicKeyPEM reads a PKIX RSA public key (CloudFront public keys).
func ParseRSAPublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	return packaging.DecodeKey[*rsa.PublicKey](data, "", "RSA", "a PKIX public key", x509.ParsePKIXPublicKey)
}

// ParseRSAPrivateKeyPEM reads a PKCS#1 or PKCS#8 RSA private key.
func ParseRSAPrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	pkcs1 := func(b []byte) (any, error) { return x509.ParsePKCS1PrivateKey(b) }
	return packaging.DecodeKey[*rsa.PrivateKey](data, "", "RSA", "a PKCS#1 or PKCS#8 private key", pkcs1, x509.ParsePKCS8PrivateKey)
}
