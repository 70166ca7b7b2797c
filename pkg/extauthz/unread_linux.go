package extauthz

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unread returns the bytes received on c's socket and not yet read, 0
// when that cannot be told.
func unread(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) //nolint:gosec // a socket's descriptor fits an int
	})
	return n
}
