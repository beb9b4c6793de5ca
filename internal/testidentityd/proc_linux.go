package testidentityd

import "syscall"

// procAttr makes the kernel kill identityd if the test binary dies without
// running its cleanups (a panic, a timeout, kill -9).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
