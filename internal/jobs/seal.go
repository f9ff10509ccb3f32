package jobs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealVersion prefixes every sealed blob so a later key-rotation scheme can
// tell formats apart.
const sealVersion byte = 1

// ErrUnseal means a sealed blob could not be opened: a different
// JOB_ENCRYPTION_KEY between api and worker, or tampered data.
var ErrUnseal = errors.New("jobs: cannot open sealed data (is JOB_ENCRYPTION_KEY the same on api and workers?)")

// Sealer encrypts job payloads and results with AES-256-GCM before they reach
// Redis: secret blocks and Airbyte passwords travel in payloads, and Redis is
// often shared, snapshotted to disk and browsable in /monitoring/.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer builds a Sealer from a 32-byte key (config.JobEncryptionKey).
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("jobs: JOB_ENCRYPTION_KEY must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plain. aad binds the blob to its place (task type and id), so
// a blob copied onto another task does not open.
func (s *Sealer) Seal(plain, aad []byte) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1 : 1+ns]); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ panics itself).
		panic(fmt.Sprintf("jobs: crypto/rand: %v", err))
	}
	return s.aead.Seal(out, out[1:1+ns], plain, aad)
}

// Open decrypts a blob made by Seal with the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrUnseal
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, ErrUnseal
	}
	return plain, nil
}
