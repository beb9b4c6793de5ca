package tokenstore

// MemorySizes exposes how much a Memory holds, for the boundedness tests.
func MemorySizes(m *Memory) (sessions, userIndexes, events int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions), len(m.byUser), len(m.events)
}
