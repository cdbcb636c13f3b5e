// libaio, loaded at run time. Filled in by the Storage work.
