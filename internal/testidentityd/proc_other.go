//go:build !linux

package testidentityd

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
