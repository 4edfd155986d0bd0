package testserver

import (
	"crypto/rsa"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/testserver/cloudfront"
)

// The catalog a Server serves (internal/catalog holds the format and the signing).
type (
	Row     = catalog.Row
	Catalog = catalog.Catalog
)

// SampleRows are the nine rows of protocol.md 1.1.
var SampleRows = catalog.SampleRows

// LoadCatalog reads DIR/catalog.json and hashes every binary it names.
func LoadCatalog(dir string) (*Catalog, error) { return catalog.Load(dir) }

// WriteSample writes the sample catalog into dir (see catalog.WriteSample).
func WriteSample(dir string, size int64, seed uint64, privPEM []byte) (*Catalog, error) {
	return catalog.WriteSample(dir, size, seed, privPEM)
}

// URLSigner makes CloudFront signed URLs (cloudfront.Signer).
type URLSigner = cloudfront.Signer

// ParseRSAPublicKeyPEM reads a PKIX RSA public key (CloudFront public keys).
func ParseRSAPublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	return cloudfront.ParseRSAPublicKeyPEM(data)
}

// ParseRSAPrivateKeyPEM reads a PKCS#1 or PKCS#8 RSA private key.
func ParseRSAPrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	return cloudfront.ParseRSAPrivateKeyPEM(data)
}
