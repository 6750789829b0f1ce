//go:build tools

package tiltbuild

import _ "github.com/tilt-dev/tilt/cmd/tilt"
