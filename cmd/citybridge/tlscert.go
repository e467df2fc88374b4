package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// loadOrCreateCertificate returns the configured certificate, or the
// self-signed one kept in the data directory, generating it on first run.
// Pages need HTTPS for camera access; on a closed network there is no
// public CA to ask.
func loadOrCreateCertificate(cfg Config) (tls.Certificate, bool, error) {
	if cfg.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		return c, false, err
	}
	certPath := filepath.Join(cfg.Data, "tls-cert.pem")
	keyPath := filepath.Join(cfg.Data, "tls-key.pem")
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return c, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return c, false, fmt.Errorf("certificate in %s: %w", cfg.Data, err)
	}
	certPEM, keyPEM, err := selfSigned(cfg.PublicIPs)
	if err != nil {
		return c, false, err
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return c, false, err
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return c, false, err
	}
	c, err = tls.X509KeyPair(certPEM, keyPEM)
	return c, true, err
}

// selfSigned makes an ECDSA P-256 certificate valid for two years for
// localhost, this host's name and the announced addresses.
func selfSigned(ips []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		names = append(names, h)
	}
	addrs := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, ip := range ips {
		if p := net.ParseIP(ip); p != nil {
			addrs = append(addrs, p)
		}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "citybridge", Organization: []string{"citybridge (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(2, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           addrs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}
