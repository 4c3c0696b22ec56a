using System.Text;
using Microsoft.ML.Tokenizers;

namespace TauCluster.Engine;

/// <summary>Text ↔ token ids for a model; models without a tokenizer work on ids only.</summary>
public interface ITextTokenizer
{
    string Name { get; }
    IReadOnlyList<int> Encode(string text);
    string Decode(IEnumerable<int> ids);

    /// <summary>The bytes of one token's text (what OpenAI's logprobs call <c>bytes</c>): part of a character, for some.</summary>
    byte[] TokenBytes(int id);
}

public static class TextTokenizer
{
    private static readonly Lazy<ITextTokenizer> Gpt2 = new(() => new TiktokenTextTokenizer("gpt2", TiktokenTokenizer.CreateForModel("gpt2")));

    /// <summary>The tokenizer named by config.json's "tokenizer" field; null means ids only.</summary>
    public static ITextTokenizer? For(string? name) => name switch
    {
        null => null,
        "gpt2" => Gpt2.Value,
        "bytes" => ByteTokenizer.Instance,
        _ => throw new ModelFormatException($"config.json: unknown tokenizer \"{name}\""),
    };

    private sealed class TiktokenTextTokenizer(string name, Tokenizer tokenizer) : ITextTokenizer
    {
        public string Name => name;
        public IReadOnlyList<int> Encode(string text) => tokenizer.EncodeToIds(text);
        public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids);
        // The decoded text's bytes: exact for the tokens that are whole characters, U+FFFD's for a token that is part of one.
        public byte[] TokenBytes(int id) => Encoding.UTF8.GetBytes(tokenizer.Decode([id]));
    }
}

/// <summary>One token per UTF-8 byte (ids 0–255): the smallest tokenizer that can read any text.</summary>
public sealed class ByteTokenizer : ITextTokenizer
{
    public static ByteTokenizer Instance { get; } = new();
    public string Name => "bytes";
    public IReadOnlyList<int> Encode(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
    public string Decode(IEnumerable<int> ids) => Encoding.UTF8.GetString(ids.Where(i => i is >= 0 and < 256).Select(i => (byte)i).ToArray());
    public byte[] TokenBytes(int id) => id is >= 0 and < 256 ? [(byte)id] : [];
}
