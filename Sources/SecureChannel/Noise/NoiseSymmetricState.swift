import Crypto

/// Noise's SymmetricState (spec §5.2) with SHA-256: the chaining key `ck`,
/// the handshake hash `h`, and the CipherState they feed.
struct NoiseSymmetricState {
    static let hashLength = 32

    private(set) var ck: [UInt8]
    private(set) var h: [UInt8]
    private(set) var cipher = NoiseCipherState()

    /// InitializeSymmetric: a name longer than HASHLEN is hashed, a shorter
    /// one zero-padded.
    init(protocolName: String) {
        let name = Array(protocolName.utf8)
        if name.count <= Self.hashLength {
            h = name + [UInt8](repeating: 0, count: Self.hashLength - name.count)
        } else {
            h = Array(SHA256.hash(data: name))
        }
        ck = h
    }

    mutating func mixHash(_ data: [UInt8]) {
        var hasher = SHA256()
        hasher.update(data: h)
        hasher.update(data: data)
        h = Array(hasher.finalize())
    }

    mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
        let out = Self.hkdf(chainingKey: ck, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        ck = out[0]
        cipher.initializeKey(out[1])
    }

    /// For the `psk` token (spec §9.2).
    mutating func mixKeyAndHash(_ inputKeyMaterial: [UInt8]) {
        let out = Self.hkdf(chainingKey: ck, inputKeyMaterial: inputKeyMaterial, outputs: 3)
        ck = out[0]
        mixHash(out[1])
        cipher.initializeKey(out[2])
    }

    mutating func encryptAndHash(_ plaintext: [UInt8], into out: inout [UInt8]) throws {
        let start = out.count
        try plaintext.withUnsafeBytes { try cipher.encrypt(ad: h, plaintext: $0, into: &out) }
        mixHash(Array(out[start...]))
    }

    mutating func decryptAndHash(_ ciphertext: ArraySlice<UInt8>) throws -> [UInt8] {
        var plaintext: [UInt8] = []
        try ciphertext.withUnsafeBytes { try cipher.decrypt(ad: h, ciphertext: $0, into: &plaintext) }
        mixHash(Array(ciphertext))
        return plaintext
    }

    /// The two transport CipherStates: initiator→responder, responder→initiator.
    func split() -> (NoiseCipherState, NoiseCipherState) {
        let out = Self.hkdf(chainingKey: ck, inputKeyMaterial: [], outputs: 2)
        var first = NoiseCipherState(), second = NoiseCipherState()
        first.initializeKey(out[0])
        second.initializeKey(out[1])
        return (first, second)
    }

    /// Noise's HKDF (spec §4.3): HMAC-SHA256 with the chaining key as the
    /// extract salt, then 2 or 3 chained 32-byte outputs.
    static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        let tempKey = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: inputKeyMaterial,
                                                                               using: SymmetricKey(data: chainingKey))))
        var result: [[UInt8]] = []
        var previous: [UInt8] = []
        for i in 1...outputs {
            previous = Array(HMAC<SHA256>.authenticationCode(for: previous + [UInt8(i)], using: tempKey))
            result.append(previous)
        }
        return result
    }
}
