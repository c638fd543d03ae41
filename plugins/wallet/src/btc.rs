//! Bitcoin: native SegWit (P2WPKH) addresses, transactions spending
//! P2WPKH outputs signed with BIP143 sighashes, and message signatures
//! (BIP137, the segwit header). Pure: signatures come from the caller (the
//! vault) as recoverable `r || s || v`.

use ripemd::Ripemd160;
use sha2::{Digest, Sha256};

/// Which chain addresses are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Mainnet,
    Testnet,
    Regtest,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        match text {
            "mainnet" | "bitcoin" => Ok(Network::Mainnet),
            "testnet" | "signet" => Ok(Network::Testnet),
            "regtest" => Ok(Network::Regtest),
            other => Err(format!(
                "bitcoin network {other:?} is not one of mainnet, testnet, signet, regtest"
            )),
        }
    }

    /// The bech32 human-readable part.
    pub fn hrp(self) -> &'static str {
        match self {
            Network::Mainnet => "bc",
            Network::Testnet => "tb",
            Network::Regtest => "bcrt",
        }
    }

    /// The BIP44 coin type of its derivation paths (BIP84: `m/84'/coin'/…`).
    pub fn coin_type(self) -> u32 {
        match self {
            Network::Mainnet => 0,
            Network::Testnet | Network::Regtest => 1,
        }
    }
}

pub fn sha256d(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(bytes)).into()
}

pub fn hash160(bytes: &[u8]) -> [u8; 20] {
    Ripemd160::digest(Sha256::digest(bytes)).into()
}

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk = 1u32;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &str) -> Vec<u8> {
    let mut out: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    out.push(0);
    out.extend(hrp.bytes().map(|b| b & 31));
    out
}

/// 8-bit bytes as 5-bit groups, padded.
fn to_five_bits(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (5 - bits)) & 31) as u8);
    }
    out
}

/// A witness version 0 address (bech32, BIP173).
pub fn segwit_v0_address(network: Network, program: &[u8]) -> String {
    let hrp = network.hrp();
    let mut data = vec![0u8];
    data.extend(to_five_bits(program));
    let mut values = hrp_expand(hrp);
    values.extend(&data);
    values.extend([0u8; 6]);
    let checksum = polymod(&values) ^ 1;
    let mut out = format!("{hrp}1");
    for d in data
        .iter()
        .copied()
        .chain((0..6).map(|i| ((checksum >> (5 * (5 - i))) & 31) as u8))
    {
        out.push(char::from(CHARSET[usize::from(d)]));
    }
    out
}

/// The witness program of a v0 address on `network`: the 20-byte key hash
/// (P2WPKH) or 32-byte script hash (P2WSH).
pub fn parse_segwit_v0(network: Network, address: &str) -> Result<Vec<u8>, String> {
    let lower = address.to_lowercase();
    if lower != address && address.to_uppercase() != address {
        return Err(format!("address {address:?} mixes cases"));
    }
    let (hrp, rest) = lower
        .rsplit_once('1')
        .ok_or_else(|| format!("{address:?} is not a bech32 address"))?;
    if hrp != network.hrp() {
        return Err(format!(
            "{address:?} is not a {} address (expected {}1…)",
            match network {
                Network::Mainnet => "mainnet",
                Network::Testnet => "testnet",
                Network::Regtest => "regtest",
            },
            network.hrp()
        ));
    }
    let data: Vec<u8> = rest
        .bytes()
        .map(|c| CHARSET.iter().position(|x| *x == c).map(|p| p as u8))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{address:?} has a character bech32 does not use"))?;
    if data.len() < 7 {
        return Err(format!("{address:?} is too short"));
    }
    let mut values = hrp_expand(hrp);
    values.extend(&data);
    if polymod(&values) != 1 {
        return Err(format!("{address:?} has a wrong checksum (mistyped?)"));
    }
    let (version, program5) = (data[0], &data[1..data.len() - 6]);
    if version != 0 {
        return Err(format!(
            "{address:?} is witness version {version}; only v0 (bc1q…) outputs are built here"
        ));
    }
    let (mut acc, mut bits, mut program) = (0u32, 0u32, Vec::new());
    for v in program5 {
        acc = (acc << 5) | u32::from(*v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            program.push(((acc >> bits) & 0xff) as u8);
        }
    }
    if bits >= 5 || (acc & ((1 << bits) - 1)) != 0 || !matches!(program.len(), 20 | 32) {
        return Err(format!("{address:?} has a malformed witness program"));
    }
    Ok(program)
}

/// The P2WPKH address of a compressed public key.
pub fn p2wpkh_address(network: Network, public_key: &[u8]) -> String {
    segwit_v0_address(network, &hash160(public_key))
}

/// The output script paying a witness v0 program.
pub fn segwit_script(program: &[u8]) -> Vec<u8> {
    let mut script = vec![0x00, program.len() as u8];
    script.extend_from_slice(program);
    script
}

fn varint(n: u64, out: &mut Vec<u8>) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend((n as u16).to_le_bytes());
        }
        0x10000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend((n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend(n.to_le_bytes());
        }
    }
}

/// One input: a P2WPKH output this wallet's key `public_key` can spend.
#[derive(Debug, Clone)]
pub struct Input {
    /// The previous transaction's id, in the byte order it is displayed.
    pub txid: [u8; 32],
    pub vout: u32,
    /// The amount of the output spent, in satoshi (BIP143 signs it).
    pub amount: u64,
    pub sequence: u32,
    pub public_key: Vec<u8>,
}

/// One output.
#[derive(Debug, Clone)]
pub struct Output {
    pub amount: u64,
    pub script: Vec<u8>,
}

/// A version 2 transaction spending P2WPKH inputs.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub version: u32,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    pub lock_time: u32,
}

const SIGHASH_ALL: u32 = 1;

impl Transaction {
    fn outpoint(input: &Input, out: &mut Vec<u8>) {
        let mut txid = input.txid;
        txid.reverse();
        out.extend(txid);
        out.extend(input.vout.to_le_bytes());
    }

    fn output_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for o in &self.outputs {
            out.extend(o.amount.to_le_bytes());
            varint(o.script.len() as u64, &mut out);
            out.extend(&o.script);
        }
        out
    }

    /// BIP143's digest for input `index` with SIGHASH_ALL.
    pub fn sighash(&self, index: usize) -> Result<[u8; 32], String> {
        let input = self
            .inputs
            .get(index)
            .ok_or_else(|| format!("no input {index}"))?;
        let mut prevouts = Vec::new();
        let mut sequences = Vec::new();
        for i in &self.inputs {
            Self::outpoint(i, &mut prevouts);
            sequences.extend(i.sequence.to_le_bytes());
        }
        let mut pre = Vec::new();
        pre.extend(self.version.to_le_bytes());
        pre.extend(sha256d(&prevouts));
        pre.extend(sha256d(&sequences));
        Self::outpoint(input, &mut pre);
        // scriptCode of P2WPKH: the P2PKH script of the key hash.
        pre.extend([0x19, 0x76, 0xa9, 0x14]);
        pre.extend(hash160(&input.public_key));
        pre.extend([0x88, 0xac]);
        pre.extend(input.amount.to_le_bytes());
        pre.extend(input.sequence.to_le_bytes());
        pre.extend(sha256d(&self.output_bytes()));
        pre.extend(self.lock_time.to_le_bytes());
        pre.extend(SIGHASH_ALL.to_le_bytes());
        Ok(sha256d(&pre))
    }

    /// The signed transaction (segwit serialization) given each input's
    /// DER signature, and its txid (display order).
    pub fn signed(&self, der_signatures: &[Vec<u8>]) -> (Vec<u8>, [u8; 32]) {
        let mut legacy = Vec::new();
        legacy.extend(self.version.to_le_bytes());
        let mut body = Vec::new();
        varint(self.inputs.len() as u64, &mut body);
        for i in &self.inputs {
            Self::outpoint(i, &mut body);
            body.push(0); // empty scriptSig
            body.extend(i.sequence.to_le_bytes());
        }
        varint(self.outputs.len() as u64, &mut body);
        body.extend(self.output_bytes());
        legacy.extend(&body);
        legacy.extend(self.lock_time.to_le_bytes());
        let mut txid = sha256d(&legacy);
        txid.reverse();

        let mut raw = Vec::new();
        raw.extend(self.version.to_le_bytes());
        raw.extend([0x00, 0x01]); // marker, flag
        raw.extend(&body);
        for (input, der) in self.inputs.iter().zip(der_signatures) {
            raw.push(2);
            varint(der.len() as u64 + 1, &mut raw);
            raw.extend(der);
            raw.push(SIGHASH_ALL as u8);
            varint(input.public_key.len() as u64, &mut raw);
            raw.extend(&input.public_key);
        }
        raw.extend(self.lock_time.to_le_bytes());
        (raw, txid)
    }
}

/// DER encoding of a signature's `r` and `s`.
pub fn der(signature: &[u8; 65]) -> Vec<u8> {
    fn integer(bytes: &[u8], out: &mut Vec<u8>) {
        let first = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        let mut value = bytes[first..].to_vec();
        if value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        out.push(0x02);
        out.push(value.len() as u8);
        out.extend(value);
    }
    let mut body = Vec::new();
    integer(&signature[..32], &mut body);
    integer(&signature[32..64], &mut body);
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The digest a Bitcoin message signature signs.
pub fn message_hash(message: &[u8]) -> [u8; 32] {
    let mut data = Vec::new();
    let prefix = b"Bitcoin Signed Message:\n";
    varint(prefix.len() as u64, &mut data);
    data.extend(prefix);
    varint(message.len() as u64, &mut data);
    data.extend(message);
    sha256d(&data)
}

/// A message signature for a P2WPKH address, BIP137: header 39 + recovery
/// id, then `r || s`; 65 bytes, shown base64 by wallets.
pub fn message_signature(signature: &[u8; 65]) -> [u8; 65] {
    let mut out = [0u8; 65];
    out[0] = 39 + signature[64];
    out[1..].copy_from_slice(&signature[..64]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bip84_vector_for_the_test_mnemonic() {
        // m/84'/0'/0'/0/0 of "abandon … about" (BIP84).
        let public_key =
            hex::decode("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c")
                .unwrap();
        let address = p2wpkh_address(Network::Mainnet, &public_key);
        assert_eq!(address, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
        assert_eq!(
            parse_segwit_v0(Network::Mainnet, &address).unwrap(),
            hash160(&public_key)
        );
        assert!(p2wpkh_address(Network::Regtest, &public_key).starts_with("bcrt1q"));
        assert!(p2wpkh_address(Network::Testnet, &public_key).starts_with("tb1q"));
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        let good = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
        let typo = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv";
        assert!(
            parse_segwit_v0(Network::Mainnet, typo)
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            parse_segwit_v0(Network::Testnet, good)
                .unwrap_err()
                .contains("tb1")
        );
        assert!(parse_segwit_v0(Network::Mainnet, "bc1").is_err());
        // BIP173's P2WSH example decodes to a 32-byte program.
        let p2wsh = "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3";
        assert_eq!(
            parse_segwit_v0(Network::Mainnet, &p2wsh.to_uppercase())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn the_bip143_native_p2wpkh_example_sighash() {
        let txid = |hex_le: &str| {
            let mut id: [u8; 32] = hex::decode(hex_le).unwrap().try_into().unwrap();
            id.reverse();
            id
        };
        let tx = Transaction {
            version: 1,
            inputs: vec![
                Input {
                    txid: txid("fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f"),
                    vout: 0,
                    amount: 625_000_000,
                    sequence: 0xffffffee,
                    // Not P2WPKH in the BIP (P2PK); only input 1 is hashed.
                    public_key: vec![],
                },
                Input {
                    txid: txid("ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a"),
                    vout: 1,
                    amount: 600_000_000,
                    sequence: 0xffffffff,
                    public_key: hex::decode(
                        "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357",
                    )
                    .unwrap(),
                },
            ],
            outputs: vec![
                Output {
                    amount: 112_340_000,
                    script: hex::decode("76a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac")
                        .unwrap(),
                },
                Output {
                    amount: 223_450_000,
                    script: hex::decode("76a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac")
                        .unwrap(),
                },
            ],
            lock_time: 17,
        };
        assert_eq!(
            hex::encode(tx.sighash(1).unwrap()),
            "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
        );
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        let mut sig = [0u8; 65];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s high bit set: a 0x00 pad
        let der = der(&sig);
        assert_eq!(&der[..5], &[0x30, 38, 0x02, 1, 1]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
    }
}
