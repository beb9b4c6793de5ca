package testredis

import "syscall"

// procAttr makes the kernel kill redis-server if the test binary dies
// without running its cleanups (a panic, a timeout, kill -9).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
