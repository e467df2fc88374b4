package controlplane

import (
	"golang.org/x/crypto/bcrypt"
)

// Password hashing at production cost takes over a second under the race
// detector; the tests' passwords protect nothing.
func init() { PasswordCost = bcrypt.MinCost }
