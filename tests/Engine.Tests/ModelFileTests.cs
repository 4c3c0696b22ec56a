using System.Buffers.Binary;
using System.Text;

namespace TauCluster.Engine.Tests;

public sealed class ModelFileTests
{
    private static readonly ModelConfig Config = TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, embd: 16, layers: 2, vocab: 50);

    private static string SavedModel(Func<string, TensorDType>? dtypeOf = null)
    {
        var dir = TestSupport.TempDirectory();
        TauModel.CreateRandom(Config, 42).Save(dir, dtypeOf);
        return dir;
    }

    private static void RewriteTensors(string dir, Func<List<Tensor>, IEnumerable<Tensor>> change)
    {
        var path = Path.Combine(dir, TauModel.WeightsFile);
        var tensors = SafeTensors.Read(path).Values.ToList();
        SafeTensors.Write(path, change(tensors).ToList());
    }

    [Fact]
    public void Saved_model_loads_back_and_generates_the_same_logits()
    {
        var original = TauModel.CreateRandom(Config, 42);
        var loaded = TauModel.Load(SavedModel());
        Assert.Equal(original.Config, loaded.Config);
        var tokens = TestSupport.RandomTokens(20, Config.VocabSize, 1);
        Assert.Equal(new InferenceSession(original).AppendAllLogits(tokens), new InferenceSession(loaded).AppendAllLogits(tokens));
    }

    [Fact]
    public void Same_seed_writes_the_same_weights_and_another_seed_does_not()
    {
        var a = ModelWeights.CreateRandom(Config, 7);
        Assert.Equal(a.LmHead, ModelWeights.CreateRandom(Config, 7).LmHead);
        Assert.NotEqual(a.LmHead, ModelWeights.CreateRandom(Config, 8).LmHead);
    }

    [Theory]
    [InlineData(TensorDType.F16)]
    [InlineData(TensorDType.BF16)]
    public void Half_precision_tensors_are_widened_on_load(TensorDType dtype)
    {
        var original = TauModel.CreateRandom(Config, 42);
        var loaded = TauModel.Load(SavedModel(_ => dtype));
        double tolerance = dtype == TensorDType.F16 ? 1e-3 : 1e-2;   // relative precision of the narrow type
        var a = original.Weights.TokenEmbedding;
        var b = loaded.Weights.TokenEmbedding;
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= tolerance * Math.Max(1, Math.Abs(a[i])), $"element {i}: {a[i]} vs {b[i]}");
        Assert.NotEqual(a, b);   // really narrowed and widened, not passed through
    }

    [Theory]
    [InlineData(TensorDType.F16)]
    [InlineData(TensorDType.BF16)]
    public void A_16_bit_model_stays_16_bit_and_computes_what_F32_weights_of_the_same_values_compute(TensorDType type)
    {
        var dir = TestSupport.TempDirectory();
        TauModel.CreateRandom(Config, 42, type: type).Save(dir);
        Assert.All(SafeTensors.Read(Path.Combine(dir, TauModel.WeightsFile)).Values, t => Assert.Equal(type, t.DType));

        var narrow = TauModel.Load(dir);
        Assert.Equal(type, narrow.Weights.WeightType);
        Assert.All(narrow.Packed.All, m => Assert.Equal(type, m.Type));
        var w = narrow.Weights;
        var wide = TauModel.Create(Config, new ModelWeights { TokenEmbedding = w.TokenEmbedding, Layers = w.Layers, LmHead = w.LmHead }, narrow.DefaultDomain?.Laplacian);
        Assert.Equal(wide.Packed.All.Sum(m => m.Bytes), 2 * narrow.Packed.All.Sum(m => m.Bytes));

        var tokens = TestSupport.RandomTokens(20, Config.VocabSize, 1);
        Assert.Equal(new InferenceSession(wide).AppendAllLogits(tokens), new InferenceSession(narrow).AppendAllLogits(tokens));
        // The same draws as the F32 model, rounded: close to it, and not it.
        var f32 = TauModel.CreateRandom(Config, 42).Weights.LmHead;
        Assert.NotEqual(f32, w.LmHead);
        Assert.All(f32.Zip(w.LmHead), p => Assert.Equal(type.Round(p.First), p.Second));
    }

    [Fact]
    public void A_weight_that_is_not_finite_is_refused_naming_its_tensor()
    {
        var dir = SavedModel();
        RewriteTensors(dir, tensors => tensors.Select(t => t.Name == "transformer.h.1.mlp.c_fc.weight" ? t with { Data = t.Data.Select((v, i) => i == 5 ? float.NaN : v).ToArray() } : t));
        var e = Assert.Throws<ModelFormatException>(() => TauModel.Load(dir));
        Assert.Contains("tensor transformer.h.1.mlp.c_fc.weight holds a value that is not finite", e.Message);
    }

    [Fact]
    public void A_file_of_mixed_types_is_served_as_F32()
    {
        var dir = SavedModel(name => name == "lm_head.weight" ? TensorDType.BF16 : TensorDType.F32);
        Assert.Equal(TensorDType.F32, TauModel.Load(dir).Weights.WeightType);
    }

    [Fact]
    public void Manifold_model_saves_its_laplacian_beside_it()
    {
        var dir = TestSupport.TempDirectory();
        var laplacian = Laplacian.FromTriplets("handmade", 8, 8, Enumerable.Range(0, 8).Select(i => (long)i).ToArray(),
            Enumerable.Range(0, 8).Select(i => (long)i).ToArray(), Enumerable.Repeat(2.0, 8).ToArray(), TaumodeKind.Mean);
        TauModel.CreateRandom(Config with { Taumode = new TaumodeConfig() }, 1, laplacian).Save(dir);
        var loaded = TauModel.Load(dir);
        Assert.Equal("manifold", loaded.Config.ManifoldDirectory);
        Assert.Equal(TaumodeKind.Mean, loaded.DefaultDomain!.Settings.Mode);
        Assert.Equal(2.0, loaded.DefaultDomain.Laplacian[3, 3]);
    }

    [Fact]
    public void Missing_tensor_is_named()
    {
        var dir = SavedModel();
        RewriteTensors(dir, ts => ts.Where(t => t.Name != "transformer.h.1.mlp.c_fc.weight"));
        var e = Assert.Throws<ModelFormatException>(() => TauModel.Load(dir));
        Assert.Contains("missing tensor transformer.h.1.mlp.c_fc.weight", e.Message);
    }

    [Fact]
    public void Misshaped_tensor_is_named_with_both_shapes()
    {
        var dir = SavedModel();
        RewriteTensors(dir, ts => ts.Select(t => t.Name == "lm_head.weight" ? t with { Shape = [Config.NEmbd, Config.VocabSize] } : t));
        var e = Assert.Throws<ModelFormatException>(() => TauModel.Load(dir));
        Assert.Contains("lm_head.weight has shape [16, 50], expected [50, 16]", e.Message);
    }

    [Fact]
    public void Truncated_safetensors_is_an_error_naming_the_tensor_cut_off()
    {
        var dir = SavedModel();
        var path = Path.Combine(dir, TauModel.WeightsFile);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        var e = Assert.Throws<ModelFormatException>(() => TauModel.Load(dir));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("lm_head.weight", e.Message);

        File.WriteAllBytes(path, bytes[..5]);
        Assert.Contains("truncated", Assert.Throws<ModelFormatException>(() => TauModel.Load(dir)).Message);
    }

    [Fact]
    public void Unknown_dtype_is_an_error_naming_it()
    {
        var path = Path.Combine(TestSupport.TempDirectory(), "weights.safetensors");
        var header = Encoding.UTF8.GetBytes("""{"x":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}""");
        var file = new byte[8 + header.Length + 2];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        File.WriteAllBytes(path, file);
        var e = Assert.Throws<ModelFormatException>(() => SafeTensors.Read(path));
        Assert.Contains("tensor x has unsupported dtype I8", e.Message);
    }

    [Fact]
    public void Header_entry_of_the_wrong_json_type_is_an_error_naming_the_tensor()
    {
        var path = Path.Combine(TestSupport.TempDirectory(), "weights.safetensors");
        var header = Encoding.UTF8.GetBytes("""{"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}""");
        var file = new byte[8 + header.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        File.WriteAllBytes(path, file);
        Assert.Contains("tensor w has a malformed header entry", Assert.Throws<ModelFormatException>(() => SafeTensors.Read(path)).Message);
    }

    [Fact]
    public void Corrupt_header_json_is_an_error()
    {
        var path = Path.Combine(TestSupport.TempDirectory(), "weights.safetensors");
        var header = Encoding.UTF8.GetBytes("{ not json");
        var file = new byte[8 + header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        File.WriteAllBytes(path, file);
        Assert.Contains("not valid JSON", Assert.Throws<ModelFormatException>(() => SafeTensors.Read(path)).Message);
    }

    [Theory]
    [InlineData("""{"n_layer": 1, "n_head": 1, "n_embd": 8}""", "vocab_size is missing")]
    [InlineData("""{"vocab_size": 10, "n_layer": 1, "n_head": 3, "n_embd": 8}""", "n_embd = 8 must be a multiple of n_head (3)")]
    [InlineData("""{"vocab_size": 10, "n_layer": 1, "n_head": 4, "n_kv_head": 3, "n_embd": 8}""", "n_kv_head = 3 must divide n_head (4)")]
    [InlineData("""{"vocab_size": 10, "n_layer": 1, "n_head": 1, "n_embd": 8, "attention": "linear"}""", "attention = \"linear\"")]
    [InlineData("""{"vocab_size": 10, "n_layer": 1, "n_head": 1, "n_embd": 8, "taumode": {"mode": "max"}}""", "taumode.mode = \"max\"")]
    [InlineData("""{"vocab_size": 10, "n_layer": 1, "n_head": 1, "n_embd": 8, "laplacian": 3}""", "laplacian = 3")]
    [InlineData("""{"vocab_size": "ten", "n_layer": 1, "n_head": 1, "n_embd": 8}""", "vocab_size = \"ten\" must be an integer")]
    [InlineData("""[1, 2]""", "root must be a JSON object")]
    [InlineData("""{ "vocab_size": """, "invalid JSON")]
    public void Invalid_config_names_the_field(string json, string expected)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Parse(json));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Config_round_trips_through_json()
    {
        var config = Config with { ManifoldDirectory = "manifold", Tokenizer = "gpt2", Taumode = new TaumodeConfig(TaumodeKind.Percentile, 0.5, 1e-7, 0.25, 0.9) };
        Assert.Equal(config, ModelConfig.Parse(config.ToJson()));
    }

    [Fact]
    public void Manifold_path_outside_the_model_directory_is_refused()
    {
        var dir = SavedModel();
        File.WriteAllText(Path.Combine(dir, TauModel.ConfigFile), (Config with { ManifoldDirectory = "../../etc" }).ToJson());
        Assert.Contains("inside the model directory", Assert.Throws<ModelFormatException>(() => TauModel.Load(dir)).Message);
    }

    [Fact]
    public void Token_ids_outside_the_vocabulary_are_rejected_and_the_session_stays_usable()
    {
        var session = new InferenceSession(TauModel.CreateRandom(Config, 1));
        session.Append([1, 2, 3]);
        Assert.Equal(50, Assert.Throws<TokenOutOfRangeException>(() => session.Append([4, 50])).VocabSize);
        Assert.Throws<TokenOutOfRangeException>(() => session.Append(-1));
        Assert.Equal(3, session.Length);
        Assert.Equal(3, session.Cache.Length);
        session.Append(4);
        Assert.Equal(4, session.Length);
    }

    [Fact]
    public void Prompt_longer_than_sequence_len_is_rejected()
    {
        var model = TauModel.CreateRandom(Config with { SequenceLen = 16 }, 1);
        var session = new InferenceSession(model);
        var e = Assert.Throws<ContextLengthExceededException>(() => session.Append(new int[17]));
        Assert.Equal(16, e.Limit);
        session.Append(new int[16]);
        Assert.Throws<ContextLengthExceededException>(() => session.Append(0));
    }

    [Fact]
    public void A_model_whose_lambda_has_weights_saves_them_and_loads_back_to_the_same_logits_and_refuses_a_file_without_them()
    {
        var config = Config with { Taumode = Config.Taumode! with { LearnedTemperature = true, ProjectionDim = 12 } };
        var model = TauModel.CreateRandom(config, 43);
        var dir = TestSupport.TempDirectory();
        model.Save(dir);
        var tokens = TestSupport.RandomTokens(20, config.VocabSize, 3);
        var loaded = TauModel.Load(dir);
        Assert.Equal(config, loaded.Config);
        Assert.Equal(new InferenceSession(model).AppendAllLogits(tokens), new InferenceSession(loaded).AppendAllLogits(tokens));
        Assert.Equal(12, loaded.DefaultDomain!.Laplacian.Dimension);   // the chain of the projection's dimension

        // The domain a session picks must have the projection's dimension, not the head's.
        var wrong = Assert.Throws<LaplacianException>(() => loaded.DomainFor(Laplacian.Chain(config.HeadDim)));
        Assert.Contains("takes λ in 12 dimensions", wrong.Message);

        // The same file under a config that asks for the gains but lacks them in the weights: an error naming the tensor.
        var withoutGains = TestSupport.TempDirectory();
        TauModel.Create(config with { Taumode = config.Taumode! with { LearnedTemperature = false } }, model.Weights).Save(withoutGains);
        File.WriteAllText(Path.Combine(withoutGains, TauModel.ConfigFile), config.ToJson());
        var missing = Assert.Throws<ModelFormatException>(() => TauModel.Load(withoutGains));
        Assert.Contains("missing tensor transformer.h.0.attn.lambda_log_gain", missing.Message);
    }

    [Fact]
    public void Missing_model_directory_and_files_are_clear_errors()
    {
        Assert.Contains("not found", Assert.Throws<ModelFormatException>(() => TauModel.Load("/nonexistent/model")).Message);
        var dir = TestSupport.TempDirectory();
        Assert.Contains("config.json not found", Assert.Throws<ModelFormatException>(() => TauModel.Load(dir)).Message);
    }

    [Theory]
    [InlineData("\"recency\": \"linear\"", "taumode.recency = \"linear\" must be \"none\" or \"alibi\"")]
    [InlineData("\"lambda_before_rope\": \"yes\"", "taumode.lambda_before_rope = \"yes\" must be true or false")]
    [InlineData("\"learned_temperature\": 1", "taumode.learned_temperature = 1 must be true or false")]
    [InlineData("\"projection_dim\": 1", "taumode.projection_dim = 1 must be 0 (none) or lie in [2, 4096]")]
    [InlineData("\"projection_dim\": 2.5", "projection_dim = 2.5 must be an integer")]
    public void A_tau_variant_that_is_not_one_is_refused(string field, string message)
    {
        string json = """{"vocab_size": 8, "n_layer": 1, "n_head": 1, "n_embd": 4, "taumode": {""" + field + "}}";
        Assert.Contains(message, Assert.Throws<ModelFormatException>(() => ModelConfig.Parse(json)).Message);
    }
}
