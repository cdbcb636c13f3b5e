import Crypto

/// The HandshakeState (Noise spec §5.3) of the one pattern Skiff uses,
/// Noise_NNpsk0_25519_ChaChaPoly_SHA256 (§7.4 NN with the §9 psk0 modifier):
///
///     -> psk, e
///     <- e, ee
///
/// Both sides prove knowledge of the pre-shared key: the first message's
/// payload is encrypted under a key mixed from it, so a responder with another
/// key fails to decrypt it, and the second message likewise for the initiator.
struct NoiseHandshake {
    static let protocolName = "Noise_NNpsk0_25519_ChaChaPoly_SHA256"
    static let dhLength = 32
    static let pskLength = 32
    /// Every Noise message, handshake or transport, is at most this long (§3).
    static let maxMessageLength = 65535

    enum Role { case initiator, responder }

    let role: Role
    private var symmetric: NoiseSymmetricState
    private let psk: [UInt8]
    private let ephemeral: Curve25519.KeyAgreement.PrivateKey
    private var remoteEphemeral: Curve25519.KeyAgreement.PublicKey?
    /// 0: `psk, e` next; 1: `e, ee` next; 2: done.
    private(set) var messageIndex = 0

    /// `ephemeral` is for test vectors only; real handshakes take a fresh key.
    init(role: Role, prologue: [UInt8], psk: [UInt8],
         ephemeral: Curve25519.KeyAgreement.PrivateKey = .init()) {
        precondition(psk.count == Self.pskLength, "a Noise PSK is 32 bytes")
        self.role = role
        self.psk = psk
        self.ephemeral = ephemeral
        symmetric = NoiseSymmetricState(protocolName: Self.protocolName)
        symmetric.mixHash(prologue)
    }

    var isComplete: Bool { messageIndex == 2 }
    var handshakeHash: [UInt8] { symmetric.h }

    /// Whether this side writes the next handshake message.
    var writesNext: Bool { (messageIndex == 0) == (role == .initiator) && !isComplete }

    mutating func writeMessage(payload: [UInt8]) throws -> [UInt8] {
        guard writesNext else { throw NoiseError.malformed("not this side's turn to write") }
        var out: [UInt8] = []
        if messageIndex == 0 { symmetric.mixKeyAndHash(psk) }
        let e = Array(ephemeral.publicKey.rawRepresentation)
        out += e
        symmetric.mixHash(e)
        symmetric.mixKey(e)  // psk modifier: `e` also feeds the key (§9.2)
        if messageIndex == 1 { try mixEphemeralDH() }
        try symmetric.encryptAndHash(payload, into: &out)
        guard out.count <= Self.maxMessageLength else { throw NoiseError.malformed("payload too long") }
        messageIndex += 1
        return out
    }

    mutating func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        guard !writesNext, !isComplete else { throw NoiseError.malformed("not this side's turn to read") }
        guard message.count >= Self.dhLength + NoiseCipherState.tagLength,
              message.count <= Self.maxMessageLength else {
            throw NoiseError.malformed("message of \(message.count) bytes")
        }
        if messageIndex == 0 { symmetric.mixKeyAndHash(psk) }
        let re = Array(message[..<Self.dhLength])
        remoteEphemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: re)
        symmetric.mixHash(re)
        symmetric.mixKey(re)
        if messageIndex == 1 { try mixEphemeralDH() }
        let payload = try symmetric.decryptAndHash(message[Self.dhLength...])
        messageIndex += 1
        return payload
    }

    /// The `ee` token.
    private mutating func mixEphemeralDH() throws {
        guard let remoteEphemeral else { throw NoiseError.malformed("no remote ephemeral key") }
        let shared: [UInt8]
        do {
            shared = try ephemeral.sharedSecretFromKeyAgreement(with: remoteEphemeral).withUnsafeBytes { Array($0) }
        } catch {
            throw NoiseError.invalidPublicKey  // an all-zero result: a low-order point
        }
        symmetric.mixKey(shared)
    }

    /// The transport CipherStates, oriented for this side.
    func split() -> (send: NoiseCipherState, receive: NoiseCipherState) {
        precondition(isComplete)
        let (initiatorToResponder, responderToInitiator) = symmetric.split()
        return role == .initiator ? (initiatorToResponder, responderToInitiator)
                                  : (responderToInitiator, initiatorToResponder)
    }
}
