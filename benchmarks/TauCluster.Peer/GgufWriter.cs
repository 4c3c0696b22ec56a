using System.Text;
using TauCluster.Engine;

namespace TauCluster.Peer;

/// <summary>Writes one row (ggml's innermost dimension) of a tensor: row number <paramref name="index"/>.</summary>
public delegate void RowFill(Span<float> row, int index);


/// <summary>
/// A minimal GGUF v3 writer: the header, metadata key/values, the tensor infos, then each tensor's data at an offset
/// aligned to <see cref="Alignment"/>. Only what the peer's model needs: scalar and array metadata, F32, F16 and
/// BF16 tensors.
/// Little-endian throughout, as the format says.
/// </summary>
public sealed class GgufWriter
{
    public const uint Alignment = 32;

    private const uint Magic = 0x46554747;   // "GGUF" read as a little-endian uint32
    private const uint Version = 3;

    private enum ValueType : uint
    {
        UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    }

    private readonly List<Action<BinaryWriter>> _metadata = [];
    private readonly List<Tensor> _tensors = [];

    /// <summary>One tensor: its dimensions innermost first (ggml's ne[0] is the row length) and a writer of its values.</summary>
    private sealed record Tensor(string Name, long[] Dims, TensorDType Type, Action<BinaryWriter> WriteData)
    {
        public long Bytes => Dims.Aggregate(1L, (a, d) => a * d) * Type.ElementSize();
    }

    /// <summary>ggml's number for the type (ggml_type): what each tensor info carries.</summary>
    private static uint GgmlType(TensorDType type) => type switch
    {
        TensorDType.F32 => 0, TensorDType.F16 => 1, TensorDType.BF16 => 30,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public void Add(string key, uint value) => Meta(key, ValueType.UInt32, w => w.Write(value));
    public void Add(string key, float value) => Meta(key, ValueType.Float32, w => w.Write(value));
    public void Add(string key, bool value) => Meta(key, ValueType.Bool, w => w.Write((byte)(value ? 1 : 0)));
    public void Add(string key, string value) => Meta(key, ValueType.String, w => WriteString(w, value));

    public void Add(string key, IReadOnlyList<string> values) => Meta(key, ValueType.Array, w =>
    {
        w.Write((uint)ValueType.String);
        w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    });

    public void Add(string key, IReadOnlyList<float> values) => Meta(key, ValueType.Array, w =>
    {
        w.Write((uint)ValueType.Float32);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    });

    public void Add(string key, IReadOnlyList<int> values) => Meta(key, ValueType.Array, w =>
    {
        w.Write((uint)ValueType.Int32);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    });

    /// <summary>
    /// A tensor of the given dimensions, innermost first: a PyTorch [out, in] matrix is <c>[in, out]</c> here.
    /// <paramref name="fill"/> writes exactly the product of the dimensions in floats, row after row; a 16-bit
    /// <paramref name="type"/> stores them rounded to nearest even.
    /// </summary>
    public void AddTensor(string name, long[] dims, RowFill fill, TensorDType type = TensorDType.F32)
    {
        long count = dims.Aggregate(1L, (a, d) => a * d);
        int row = (int)dims[0];
        _tensors.Add(new Tensor(name, dims, type, w =>
        {
            var buffer = new float[row];
            var narrow = new ushort[row];
            var bytes = new byte[row * type.ElementSize()];
            for (long r = 0, rows = count / row; r < rows; r++)
            {
                fill(buffer, (int)r);
                if (type == TensorDType.F32) Buffer.BlockCopy(buffer, 0, bytes, 0, bytes.Length);
                else
                {
                    for (int i = 0; i < row; i++) narrow[i] = type.Narrow(buffer[i]);
                    Buffer.BlockCopy(narrow, 0, bytes, 0, bytes.Length);
                }
                w.Write(bytes);
            }
        }));
    }

    /// <summary>Writes the file; returns its size in bytes.</summary>
    public long Write(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var kv in _metadata) kv(w);

        ulong offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (var d in t.Dims) w.Write((ulong)d);
            w.Write(GgmlType(t.Type));
            w.Write(offset);
            offset = Align(offset + (ulong)t.Bytes);
        }
        Pad(w);
        long dataStart = stream.Position;
        foreach (var t in _tensors)
        {
            t.WriteData(w);
            Pad(w);
        }
        w.Flush();
        if ((ulong)(stream.Position - dataStart) != offset)
            throw new InvalidOperationException($"GGUF data section is {stream.Position - dataStart} bytes, the tensor infos say {offset}");
        return stream.Length;
    }

    private void Meta(string key, ValueType type, Action<BinaryWriter> value) => _metadata.Add(w =>
    {
        WriteString(w, key);
        w.Write((uint)type);
        value(w);
    });

    /// <summary>A gguf string: uint64 byte length, then UTF-8 bytes without a terminator.</summary>
    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static ulong Align(ulong n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w)
    {
        long position = w.BaseStream.Position;
        long padded = (long)Align((ulong)position);
        for (long i = position; i < padded; i++) w.Write((byte)0);
    }
}
