// Placeholder while qcow2 lands.
public final class Qcow2Image {}
struct BackingChain { init(top: String) {} }
enum Qcow2Header { static let magicBytes: [UInt8] = [0x51, 0x46, 0x49, 0xfb] }
