// The ops page (placeholder: built next).
import { token } from "/web/larder.js";
token();
