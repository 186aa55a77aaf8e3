import pytest

from rnngen.spec import MAX_T, RNNSpec, SpecError, check_T


@pytest.mark.parametrize("value", [0, -3, "abc", "", MAX_T + 1, 2.5, True, None])
def test_bad_unroll_lengths_are_refused_with_the_allowed_range(value):
    with pytest.raises(SpecError, match=f"T must be a whole number from 1 to {MAX_T}"):
        check_T(value)


@pytest.mark.parametrize("value, expected", [(1, 1), ("7", 7), (MAX_T, MAX_T)])
def test_good_unroll_lengths(value, expected):
    assert check_T(value) == expected


def test_unknown_activation_names_the_valid_ones_and_the_closest():
    with pytest.raises(
        SpecError, match=r"unknown hidden activation 'tnah' \(did you mean 'tanh'\?\); choose one of: tanh"
    ):
        RNNSpec(T=5, hidden="tnah")


def test_name_and_digest_identify_the_spec():
    a, b = RNNSpec(T=5), RNNSpec(T=6)
    assert a.name == "rnn_tanh_softmax_xent_t5"
    assert a.digest() == RNNSpec(T=5).digest() != b.digest()
    assert a.cli_args() == "--T 5"


def test_spec_is_frozen():
    with pytest.raises(AttributeError):
        RNNSpec(T=5).T = 6


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "output",
            "softmx",
            "unknown output layer 'softmx' (did you mean 'softmax'?); choose one of: softmax, sigmoid",
        ),
        ("loss", "mse", "unknown loss 'mse'"),
        ("mapping", "many_to_one", "unknown mapping 'many_to_one' (did you mean 'many-to-one'?)"),
        ("notation", "rows", "unknown notation 'rows' (did you mean 'row'?)"),
        ("hidden", "relu6", "unknown hidden activation 'relu6' (did you mean 'relu'?)"),
    ],
)
def test_unknown_names_list_the_valid_ones_and_suggest_the_closest(field, value, message):
    with pytest.raises(SpecError) as info:
        RNNSpec(T=3, **{field: value})
    assert message in str(info.value) and "choose one of" in str(info.value)


def test_a_loss_with_logs_needs_an_output_in_zero_one_and_the_message_names_the_fitting_loss():
    with pytest.raises(SpecError) as info:
        RNNSpec(T=3, output="identity", loss="cross_entropy")
    assert str(info.value) == (
        "the cross_entropy loss needs an output in (0, 1) (--output softmax, sigmoid); "
        "the identity output fits --loss squared_error"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('true')", "a call of anything but a listed function is not allowed"),
        ("__import__('os')", "a call of '__import__' is not allowed"),
        ("x.real", "attribute access"),
        ("y + 1", "the name 'y'"),
        ("exp(x, 2)", "exp with other than one argument"),
        ("x ^ 2", "write powers as **"),
        ("'x'", "the constant 'x'"),
        ("lambda x: x", "the construct Lambda"),
        ("x +", "cannot parse"),
        ("x**1000", "an exponent larger than 16"),
        ("1 + 2", "does not depend on x"),
        ("x / 0", "division by zero"),
        ("[x]", "the construct List"),
    ],
)
def test_custom_activations_are_parsed_safely(text, message):
    with pytest.raises(SpecError) as info:
        RNNSpec(T=3, hidden=text)
    assert message in str(info.value)


def test_a_custom_activation_is_canonical_and_named_by_a_hash():
    a, b = RNNSpec(T=3, hidden="x / (1 + abs(x))"), RNNSpec(T=3, hidden="x/(1+abs(x))")
    assert a == b and a.hidden == "x / (1 + abs(x))"
    assert a.name.startswith("rnn_custom") and a.name.isidentifier()
    assert a.cli_args() == "--T 3 --hidden 'x / (1 + abs(x))'"


@pytest.mark.parametrize("slope", [0, 1, -0.1, 2, "a"])
def test_leaky_relu_slope_must_lie_between_zero_and_one(slope):
    with pytest.raises(SpecError, match="slope must be a number between 0 and 1"):
        RNNSpec(T=3, hidden="leaky_relu", slope=slope)


def test_a_slope_without_leaky_relu_is_refused():
    with pytest.raises(SpecError, match="a slope applies to leaky_relu only"):
        RNNSpec(T=3, hidden="tanh", slope=0.1)


@pytest.mark.parametrize(
    "names, message",
    [
        ("U,W", "give three matrix names"),
        ("U,U,V", "must differ"),
        ("U,h,V", "used by rnngen itself"),
        ("U,x_1,V", "used by rnngen itself"),  # would read as step 1 of x
        ("U,W,dU", "used by rnngen itself"),  # would read as the gradient of U
        ("U,W,np", "used by rnngen itself"),
        ("U,W,W_T", "would read as a name derived from W"),  # W's transposed copy in the module
        ("U,fprime,V", "a per-step quantity of the derivation"),  # the hoisted f'(z_t)
        ("buf,W,V", "the module's set of buffers"),
        ("U,W,list", "a Python builtin"),  # the module calls list()
        ("U,W,h0", "the parameter of the initial state"),
        ("U,W,pre", "the start of per-step quantities' names"),  # pre_z
        ("d,W,V", "the document's output difference"),  # d = yhat - y in the output gradient
        ("U,W,H", "steps side by side"),  # H = [h_1 ... h_T] in the document
        ("U,W,for", "is not allowed"),
        ("U,W,2V", "is not allowed"),
        ("U,W,V.T", "is not allowed"),
    ],
)
def test_matrix_names_that_would_collide_are_refused(names, message):
    with pytest.raises(SpecError, match=message):
        RNNSpec(T=3, names=names)


@pytest.mark.parametrize("names", [None, 3, ("U", 1, "V"), b"U,W,V"], ids=repr)
def test_names_that_are_not_strings_are_one_spec_error(names):
    with pytest.raises(SpecError, match="give three matrix names"):
        RNNSpec(T=3, names=names)


def test_every_option_reaches_the_name_and_the_command():
    spec = RNNSpec(
        T=3,
        hidden="leaky_relu",
        slope=0.2,
        output="sigmoid",
        loss="binary_cross_entropy",
        mapping="many-to-one",
        notation="row",
        names="w_i,w_h,w_o",
        hidden_bias=False,
    )
    assert spec.name == "rnn_leaky_relu0p2_sigmoid_bce_m2o_row_w_i_w_h_w_o_nob_t3"
    assert spec.cli_args() == (
        "--T 3 --hidden leaky_relu --slope 0.2 --output sigmoid --loss binary_cross_entropy --mapping many-to-one "
        "--notation row --names w_i,w_h,w_o --no-hidden-bias"
    )
