package validate

import "github.com/google/uuid"

// CanonicalUUID returns id as Prefect spells a UUID (lowercase, dashed), or
// false when it is not one: the 36-character form or the 32-digit one.
func CanonicalUUID(id string) (string, bool) {
	if len(id) != 36 && len(id) != 32 {
		return "", false
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}
